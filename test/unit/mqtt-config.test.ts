// `pinhole mqtt`: its topic layout and its flags, resolved without a broker, a process or a socket.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Flags, resolveMqtt } from '../../cli/config.js';
import { mqttEventPrinter } from '../../cli/mqtt.js';
import { clientIdFor } from '../../mqtt/index.js';
import { deviceTopics, objectId, parseCommandTopic, prefixProblem, topicSegment } from '../../mqtt/topics.js';
import { codeOf } from './codes.js';

const mqtt = (f: Flags, env = {}, devices = ['kitchen']) => resolveMqtt({ 'state-dir': '/nonexistent/pinhole-test', outputs: '20', ...f }, env, devices);

test('issue 16: a device name is one topic level; command topics read back, nothing else does', () => {
  assert.equal(topicSegment('kitchen'), 'kitchen');
  assert.equal(topicSegment('a/b+c#d e'), 'a_b_c_d_e');
  const t = deviceTopics('home/pinhole', 'homeassistant', 'my board');
  assert.equal(t.base, 'home/pinhole/my_board');
  assert.deepEqual(parseCommandTopic(t.base, t.set(20)), { pin: 20, action: 'set' });
  assert.deepEqual(parseCommandTopic(t.base, t.blink(0)), { pin: 0, action: 'blink' });
  for (const bad of [t.state(20), `${t.base}/020/set`, `${t.base}/x/set`, `${t.base}/20/set/more`, `${t.base}/-1/set`, 'other/20/set', `${t.base}/1234567/set`])
    assert.equal(parseCommandTopic(t.base, bad), undefined, bad);
  assert.equal(prefixProblem('pinhole'), undefined);
  assert.equal(prefixProblem('a/b'), undefined);
  for (const bad of ['', '/a', 'a/', 'a//b', 'a/+', '#', 'a\0b']) assert.ok(prefixProblem(bad), bad);
  assert.match(objectId('ABCD-EFGH-JKMN-PQRS', 7, 'button'), /^[a-z0-9_]+$/);
  assert.equal(t.config('switch', 'ABCD-EFGH-JKMN-PQRS', 7), 'homeassistant/switch/pinhole_abcdefghjkmnpqrs_7/config');
});

test('issue 16: client ids are stable, distinct per device and at most 23 characters', () => {
  const a = clientIdFor('FP', 'pinhole', 'kitchen');
  assert.equal(a, clientIdFor('FP', 'pinhole', 'kitchen'));
  assert.notEqual(a, clientIdFor('FP', 'pinhole', 'garage'));
  assert.notEqual(a, clientIdFor('FP', 'other', 'kitchen'));
  assert.ok(a.length <= 23);
});

test('issue 16: --broker loses its credentials; the password comes from the file, else the environment, else the URL', () => {
  const c = mqtt({ broker: 'mqtt://bob:url%40pw@broker.lan' });
  assert.equal(c.broker, 'mqtt://broker.lan:1883');
  assert.equal(c.username, 'bob');
  assert.deepEqual(c.password, { from: 'url', value: 'url@pw' });
  assert.equal(c.passwordInArgv, true);
  assert.equal(mqtt({ broker: 'mqtts://broker.lan' }).broker, 'mqtts://broker.lan:8883');
  const env = mqtt({ broker: 'mqtt://bob:url@broker.lan' }, { PINHOLE_MQTT_USERNAME: 'ann', PINHOLE_MQTT_PASSWORD: 'env' });
  assert.deepEqual([env.username, env.password], ['ann', { from: 'env', value: 'env' }]);
  const file = mqtt({ broker: 'mqtt://broker.lan', username: 'cy', 'password-file': '/run/secret' }, { PINHOLE_MQTT_PASSWORD: 'env' });
  assert.deepEqual([file.username, file.password], ['cy', { from: 'file', path: '/run/secret' }]);
  assert.equal(file.passwordInArgv, false);
  assert.equal(mqtt({ broker: 'mqtt://h' }).password, undefined);
});

test('issue 16: pins, prefixes, blink and TLS flags are checked; a usage message never repeats --broker', () => {
  const c = mqtt({ broker: 'mqtt://h', outputs: '21,20', inputs: '5-6', 'blink-times': '3', 'blink-interval': '50' });
  assert.deepEqual([c.outputs, c.inputs, c.blink, c.prefix, c.discoveryPrefix], [[20, 21], [5, 6], { times: 3, intervalMs: 50 }, 'pinhole', 'homeassistant']);
  assert.deepEqual(mqtt({ broker: 'mqtt://h' }).blink, {});
  const bad: Flags[] = [
    { broker: 'ws://u:SECRET@h' },
    { broker: 'mqtt://u:SECRET@h/path' },
    { broker: 'not a url SECRET' },
    { broker: 'mqtt://h', inputs: '20' },
    { broker: 'mqtt://h', prefix: 'a/#' },
    { broker: 'mqtt://h', 'discovery-prefix': '' },
    { broker: 'mqtt://h', ca: 'ca.pem' },
    { broker: 'mqtts://h', cert: 'c.pem' },
    { broker: 'mqtt://h', 'blink-times': '0' },
    { broker: 'mqtt://:SECRET@h' },
  ];
  for (const f of bad) {
    assert.equal(
      codeOf(() => mqtt(f)),
      'usage',
      JSON.stringify(f),
    );
    try {
      mqtt(f);
    } catch (e) {
      assert.equal((e as Error).message.includes('SECRET'), false);
    }
  }
  assert.equal(
    codeOf(() => resolveMqtt({ broker: 'mqtt://h', 'state-dir': '/x' }, {}, ['kitchen'])),
    'usage',
  );
  assert.equal(
    codeOf(() => mqtt({ broker: 'mqtt://h' }, {}, [])),
    'usage',
  );
});

test('issue 16: the bridge log shows what came from the network through the terminal filter', () => {
  const lines: string[] = [];
  const print = mqttEventPrinter({ stdout: (s) => lines.push(s), stderr: (s) => lines.push(s) }, false);
  print({ event: 'ignored', device: 'kitchen', reason: 'malformed', topic: 'pinhole/kitchen/20/set', payload: '\x1b]52;c;aGk=\x07ON\nfake line' });
  print({ event: 'command', device: 'kitchen', pin: 20, action: 'set', payload: 'ON', ok: false, error: 'not-allowed', message: 'no\x1b[2J' });
  const controls = (l: string): boolean => [...l].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f);
  for (const l of lines) assert.equal(controls(l), false, l);
  assert.match(lines[0]!, /ignored a malformed message on pinhole\/kitchen\/20\/set/);
});

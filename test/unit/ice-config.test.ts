// ICE configuration derived from the server URL and --ice-server values.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { iceConfigFor, parseIceServer } from '../../session/ice-config.js';

test('issue 2: a loopback server gives our STUN on 127.0.0.1 and keeps ICE on loopback', () => {
  assert.deepEqual(iceConfigFor('ws://localhost:8080', 3478), { iceServers: [{ urls: 'stun:127.0.0.1:3478' }], hostAddresses: ['127.0.0.1'] });
});

test('issue 2: a remote server gives its own STUN and no host restriction', () => {
  assert.deepEqual(iceConfigFor('wss://pin.example:443', 3478), { iceServers: [{ urls: 'stun:pin.example:3478' }] });
});

test("issue 2: no STUN port means no STUN server at all (never werift's public default)", () => {
  assert.deepEqual(iceConfigFor('ws://198.18.0.10:8080', 0).iceServers, []);
});

test('issue 3: --ice-server parses stun and turn with credentials', () => {
  assert.deepEqual(parseIceServer('stun:198.18.0.10:3478'), { urls: 'stun:198.18.0.10:3478' });
  assert.deepEqual(parseIceServer('turn:alice:s3cret@198.18.0.10:3479'), { urls: 'turn:198.18.0.10:3479', username: 'alice', credential: 's3cret' });
  assert.deepEqual(parseIceServer('turn:a:b@h:3479?transport=tcp'), { urls: 'turn:h:3479?transport=tcp', username: 'a', credential: 'b' });
  for (const bad of ['turn:198.18.0.10:3479', 'stun:a:b@h:1', 'http://x', 'stun:host', 'turn:a:b@h:99999']) {
    assert.equal(typeof parseIceServer(bad), 'string', bad);
  }
});

test('issue 3: a TURN server follows our STUN; a user STUN replaces ours', () => {
  const turn = { urls: 'turn:h:3479', username: 'a', credential: 'b' };
  assert.deepEqual(iceConfigFor('ws://198.18.0.10:8080', 3478, [turn]).iceServers, [{ urls: 'stun:198.18.0.10:3478' }, turn]);
  assert.deepEqual(iceConfigFor('ws://198.18.0.10:8080', 3478, [{ urls: 'stun:h:1' }]).iceServers, [{ urls: 'stun:h:1' }]);
});

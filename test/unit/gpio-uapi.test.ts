// The GPIO uAPI v2 layouts of device/gpio/uapi.ts against koffi's own C
// layout of the structs of include/uapi/linux/gpio.h, and the ioctl numbers
// against the values the kernel headers give.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import koffi from 'koffi';
import * as U from '../../device/gpio/uapi.js';

const u64 = koffi.types.uint64; // __aligned_u64: 8-aligned on every architecture, as koffi lays out uint64 on x86-64
const attribute = koffi.struct('pinhole_t_gpio_v2_line_attribute', {
  id: 'uint32',
  padding: 'uint32',
  value: u64,
});
const structs = {
  chipInfo: koffi.struct('pinhole_t_gpiochip_info', { name: koffi.array('char', 32), label: koffi.array('char', 32), lines: 'uint32' }),
  lineValues: koffi.struct('pinhole_t_gpio_v2_line_values', { bits: u64, mask: u64 }),
  attribute,
  configAttribute: koffi.struct('pinhole_t_gpio_v2_line_config_attribute', { attr: attribute, mask: u64 }),
};
const config = koffi.struct('pinhole_t_gpio_v2_line_config', {
  flags: u64,
  num_attrs: 'uint32',
  padding: koffi.array('uint32', 5),
  attrs: koffi.array(structs.configAttribute, 10),
});
const request = koffi.struct('pinhole_t_gpio_v2_line_request', {
  offsets: koffi.array('uint32', 64),
  consumer: koffi.array('char', 32),
  config,
  num_lines: 'uint32',
  event_buffer_size: 'uint32',
  padding: koffi.array('uint32', 5),
  fd: 'int32',
});
const info = koffi.struct('pinhole_t_gpio_v2_line_info', {
  name: koffi.array('char', 32),
  consumer: koffi.array('char', 32),
  offset: 'uint32',
  num_attrs: 'uint32',
  flags: u64,
  attrs: koffi.array(attribute, 10),
  padding: koffi.array('uint32', 4),
});
const infoChanged = koffi.struct('pinhole_t_gpio_v2_line_info_changed', {
  info,
  timestamp_ns: u64,
  event_type: 'uint32',
  padding: koffi.array('uint32', 5),
});
const event = koffi.struct('pinhole_t_gpio_v2_line_event', {
  timestamp_ns: u64,
  id: 'uint32',
  offset: 'uint32',
  seqno: 'uint32',
  line_seqno: 'uint32',
  padding: koffi.array('uint32', 6),
});

test('struct sizes are the kernel ABI', () => {
  assert.equal(U.CHIP_INFO.size, 68);
  assert.equal(U.LINE_VALUES.size, 16);
  assert.equal(U.LINE_ATTRIBUTE.size, 16);
  assert.equal(U.LINE_CONFIG_ATTRIBUTE.size, 24);
  assert.equal(U.LINE_CONFIG.size, 272);
  assert.equal(U.LINE_REQUEST.size, 592);
  assert.equal(U.LINE_INFO.size, 256);
  assert.equal(U.LINE_INFO_CHANGED.size, 288);
  assert.equal(U.LINE_EVENT.size, 48);
});

test('sizes and offsets match the C layout of the same structs', () => {
  const check = (t: ReturnType<typeof koffi.struct>, layout: Record<string, number>, fields: Record<string, string>) => {
    assert.equal(koffi.sizeof(t), layout.size);
    for (const [ours, c] of Object.entries(fields)) assert.equal(koffi.offsetof(t, c), layout[ours], `${ours} (${c})`);
  };
  check(structs.chipInfo, U.CHIP_INFO, { name: 'name', label: 'label', lines: 'lines' });
  check(structs.lineValues, U.LINE_VALUES, { bits: 'bits', mask: 'mask' });
  check(structs.attribute, U.LINE_ATTRIBUTE, { id: 'id', value: 'value' });
  check(structs.configAttribute, U.LINE_CONFIG_ATTRIBUTE, { attr: 'attr', mask: 'mask' });
  check(config, U.LINE_CONFIG, { flags: 'flags', numAttrs: 'num_attrs', attrs: 'attrs' });
  check(request, U.LINE_REQUEST, {
    offsets: 'offsets',
    consumer: 'consumer',
    config: 'config',
    numLines: 'num_lines',
    eventBufferSize: 'event_buffer_size',
    fd: 'fd',
  });
  check(info, U.LINE_INFO, { name: 'name', consumer: 'consumer', offset: 'offset', numAttrs: 'num_attrs', flags: 'flags', attrs: 'attrs' });
  check(infoChanged, U.LINE_INFO_CHANGED, { info: 'info', timestampNs: 'timestamp_ns', eventType: 'event_type' });
  check(event, U.LINE_EVENT, { timestampNs: 'timestamp_ns', id: 'id', offset: 'offset', seqno: 'seqno', lineSeqno: 'line_seqno' });
});

test('ioctl numbers are those of linux/gpio.h', () => {
  assert.equal(U.IOCTL.GET_CHIPINFO, 0x8044b401);
  assert.equal(U.IOCTL.V2_GET_LINEINFO, 0xc100b405);
  assert.equal(U.IOCTL.V2_GET_LINEINFO_WATCH, 0xc100b406);
  assert.equal(U.IOCTL.V2_GET_LINE, 0xc250b407);
  assert.equal(U.IOCTL.GET_LINEINFO_UNWATCH, 0xc004b40c);
  assert.equal(U.IOCTL.V2_LINE_SET_CONFIG, 0xc110b40d);
  assert.equal(U.IOCTL.V2_LINE_GET_VALUES, 0xc010b40e);
  assert.equal(U.IOCTL.V2_LINE_SET_VALUES, 0xc010b40f);
});

test('a line request encodes one line, its consumer, flags, output value and debounce', () => {
  const b = U.encodeLineRequest(5, 'pinhole', { flags: U.LINE_FLAG.OUTPUT | U.LINE_FLAG.BIAS_PULL_UP, output: 1, debounceUs: 7 });
  assert.equal(b.length, U.LINE_REQUEST.size);
  assert.equal(b.readUInt32LE(U.LINE_REQUEST.offsets), 5);
  assert.equal(b.toString('latin1', U.LINE_REQUEST.consumer, U.LINE_REQUEST.consumer + 8), 'pinhole\0');
  assert.equal(b.readUInt32LE(U.LINE_REQUEST.numLines), 1);
  const cfg = U.LINE_REQUEST.config;
  assert.equal(b.readBigUInt64LE(cfg + U.LINE_CONFIG.flags), BigInt(U.LINE_FLAG.OUTPUT | U.LINE_FLAG.BIAS_PULL_UP));
  assert.equal(b.readUInt32LE(cfg + U.LINE_CONFIG.numAttrs), 2);
  const a0 = cfg + U.LINE_CONFIG.attrs;
  assert.equal(b.readUInt32LE(a0), U.LINE_ATTR_ID.OUTPUT_VALUES);
  assert.equal(b.readBigUInt64LE(a0 + 8), 1n);
  assert.equal(b.readBigUInt64LE(a0 + U.LINE_CONFIG_ATTRIBUTE.mask), 1n);
  const a1 = a0 + U.LINE_CONFIG_ATTRIBUTE.size;
  assert.equal(b.readUInt32LE(a1), U.LINE_ATTR_ID.DEBOUNCE);
  assert.equal(b.readUInt32LE(a1 + 8), 7);
});

test('line info and events decode; unknown event ids and partial events are skipped', () => {
  const i = U.lineInfoQuery(3);
  i.write('GPIO20', U.LINE_INFO.name, 'latin1');
  i.write('someone', U.LINE_INFO.consumer, 'latin1');
  i.writeBigUInt64LE(BigInt(U.LINE_FLAG.USED | U.LINE_FLAG.INPUT), U.LINE_INFO.flags);
  i.writeUInt32LE(1, U.LINE_INFO.numAttrs);
  i.writeUInt32LE(U.LINE_ATTR_ID.DEBOUNCE, U.LINE_INFO.attrs);
  i.writeUInt32LE(5000, U.LINE_INFO.attrs + 8);
  assert.deepEqual(U.decodeLineInfo(i), { offset: 3, name: 'GPIO20', consumer: 'someone', flags: U.LINE_FLAG.USED | U.LINE_FLAG.INPUT, debounceUs: 5000 });
  const e = Buffer.alloc(U.LINE_EVENT.size * 3);
  const put = (k: number, ts: bigint, id: number) => {
    e.writeBigUInt64LE(ts, k * 48);
    e.writeUInt32LE(id, k * 48 + 8);
    e.writeUInt32LE(3, k * 48 + 12);
  };
  put(0, 10n, U.LINE_EVENT_ID.RISING_EDGE);
  put(1, 20n, 9);
  put(2, 30n, U.LINE_EVENT_ID.FALLING_EDGE);
  assert.deepEqual(
    U.decodeLineEvents(e, e.length).map((x) => [x.timestampNs, x.edge, x.offset]),
    [
      [10n, 'rising', 3],
      [30n, 'falling', 3],
    ],
  );
  assert.equal(U.decodeLineEvents(e, 47).length, 0);
  assert.equal(U.lineValue(U.encodeLineValues(1)), 1);
});

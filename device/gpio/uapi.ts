/**
 * The Linux GPIO character device's uAPI v2 (include/uapi/linux/gpio.h),
 * as byte layouts: every struct's size and field offsets, the flag bits and
 * the ioctl numbers the chardev backend uses, plus encoders and decoders on
 * plain Buffers. No FFI here: the backend passes these Buffers to ioctl(2)
 * as pointers. The sizes are part of the kernel ABI and do not depend on the
 * architecture (every u64 is __aligned_u64); test/unit/gpio-uapi.test.ts
 * asserts them against koffi's own C layout of the same structs.
 *
 * The v1 uAPI is not used: kernels may be built without it (Debian's 7.x
 * kernels are).
 */

/** GPIO_MAX_NAME_SIZE: chip names, labels, line names and consumers. */
export const GPIO_MAX_NAME_SIZE = 32;
/** GPIO_V2_LINES_MAX: lines in one request. */
export const GPIO_V2_LINES_MAX = 64;
/** GPIO_V2_LINE_NUM_ATTRS_MAX: attributes in a line config or line info. */
export const GPIO_V2_LINE_NUM_ATTRS_MAX = 10;

/** enum gpio_v2_line_flag (bits of a u64; all below 2^31, so plain numbers). */
export const LINE_FLAG = {
  USED: 1 << 0,
  ACTIVE_LOW: 1 << 1,
  INPUT: 1 << 2,
  OUTPUT: 1 << 3,
  EDGE_RISING: 1 << 4,
  EDGE_FALLING: 1 << 5,
  OPEN_DRAIN: 1 << 6,
  OPEN_SOURCE: 1 << 7,
  BIAS_PULL_UP: 1 << 8,
  BIAS_PULL_DOWN: 1 << 9,
  BIAS_DISABLED: 1 << 10,
  EVENT_CLOCK_REALTIME: 1 << 11,
  EVENT_CLOCK_HTE: 1 << 12,
} as const;

/** enum gpio_v2_line_attr_id. */
export const LINE_ATTR_ID = { FLAGS: 1, OUTPUT_VALUES: 2, DEBOUNCE: 3 } as const;

/** enum gpio_v2_line_event_id. */
export const LINE_EVENT_ID = { RISING_EDGE: 1, FALLING_EDGE: 2 } as const;

/** struct gpiochip_info: name[32], label[32], u32 lines. */
export const CHIP_INFO = { size: 68, name: 0, label: 32, lines: 64 } as const;

/** struct gpio_v2_line_values: u64 bits, u64 mask. */
export const LINE_VALUES = { size: 16, bits: 0, mask: 8 } as const;

/** struct gpio_v2_line_attribute: u32 id, u32 padding, union { u64 flags; u64 values; u32 debounce_period_us }. */
export const LINE_ATTRIBUTE = { size: 16, id: 0, value: 8 } as const;

/** struct gpio_v2_line_config_attribute: struct gpio_v2_line_attribute attr, u64 mask. */
export const LINE_CONFIG_ATTRIBUTE = { size: 24, attr: 0, mask: 16 } as const;

/** struct gpio_v2_line_config: u64 flags, u32 num_attrs, u32 padding[5], attrs[10]. */
export const LINE_CONFIG = { size: 272, flags: 0, numAttrs: 8, attrs: 32 } as const;

/**
 * struct gpio_v2_line_request: u32 offsets[64], consumer[32], struct
 * gpio_v2_line_config config, u32 num_lines, u32 event_buffer_size,
 * u32 padding[5], s32 fd.
 */
export const LINE_REQUEST = { size: 592, offsets: 0, consumer: 256, config: 288, numLines: 560, eventBufferSize: 564, fd: 588 } as const;

/**
 * struct gpio_v2_line_info: name[32], consumer[32], u32 offset, u32
 * num_attrs, u64 flags, struct gpio_v2_line_attribute attrs[10], u32 padding[4].
 */
export const LINE_INFO = { size: 256, name: 0, consumer: 32, offset: 64, numAttrs: 68, flags: 72, attrs: 80 } as const;

/** struct gpio_v2_line_info_changed: struct gpio_v2_line_info info, u64 timestamp_ns, u32 event_type, u32 padding[5]. */
export const LINE_INFO_CHANGED = { size: 288, info: 0, timestampNs: 256, eventType: 264 } as const;

/** struct gpio_v2_line_event: u64 timestamp_ns, u32 id, u32 offset, u32 seqno, u32 line_seqno, u32 padding[6]. */
export const LINE_EVENT = { size: 48, timestampNs: 0, id: 8, offset: 12, seqno: 16, lineSeqno: 20 } as const;

// asm-generic/ioctl.h: dir (2 bits) | size (14 bits) | type (8 bits) | nr (8 bits).
const IOC_WRITE = 1;
const IOC_READ = 2;
function ioc(dir: number, type: number, nr: number, size: number): number {
  return ((dir << 30) | (size << 16) | (type << 8) | nr) >>> 0;
}
const GPIO_IOC_MAGIC = 0xb4;

/** The ioctl numbers of the chip fd and of a line request's fd. */
export const IOCTL = {
  /** _IOR(0xB4, 0x01, struct gpiochip_info), on the chip fd. */
  GET_CHIPINFO: ioc(IOC_READ, GPIO_IOC_MAGIC, 0x01, CHIP_INFO.size),
  /** _IOWR(0xB4, 0x05, struct gpio_v2_line_info), on the chip fd. */
  V2_GET_LINEINFO: ioc(IOC_READ | IOC_WRITE, GPIO_IOC_MAGIC, 0x05, LINE_INFO.size),
  /** _IOWR(0xB4, 0x06, struct gpio_v2_line_info), on the chip fd (not used: pinhole does not watch line info). */
  V2_GET_LINEINFO_WATCH: ioc(IOC_READ | IOC_WRITE, GPIO_IOC_MAGIC, 0x06, LINE_INFO.size),
  /** _IOWR(0xB4, 0x0C, __u32), on the chip fd (not used). */
  GET_LINEINFO_UNWATCH: ioc(IOC_READ | IOC_WRITE, GPIO_IOC_MAGIC, 0x0c, 4),
  /** _IOWR(0xB4, 0x07, struct gpio_v2_line_request), on the chip fd; fills in `fd`. */
  V2_GET_LINE: ioc(IOC_READ | IOC_WRITE, GPIO_IOC_MAGIC, 0x07, LINE_REQUEST.size),
  /** _IOWR(0xB4, 0x0D, struct gpio_v2_line_config), on a request fd. */
  V2_LINE_SET_CONFIG: ioc(IOC_READ | IOC_WRITE, GPIO_IOC_MAGIC, 0x0d, LINE_CONFIG.size),
  /** _IOWR(0xB4, 0x0E, struct gpio_v2_line_values), on a request fd. */
  V2_LINE_GET_VALUES: ioc(IOC_READ | IOC_WRITE, GPIO_IOC_MAGIC, 0x0e, LINE_VALUES.size),
  /** _IOWR(0xB4, 0x0F, struct gpio_v2_line_values), on a request fd. */
  V2_LINE_SET_VALUES: ioc(IOC_READ | IOC_WRITE, GPIO_IOC_MAGIC, 0x0f, LINE_VALUES.size),
} as const;

/** A C string field: bytes up to the first NUL (latin1: the kernel's names are ASCII). */
function cstr(b: Buffer, at: number, len: number): string {
  const end = b.indexOf(0, at);
  return b.toString('latin1', at, end < 0 || end > at + len ? at + len : end);
}

/** The chip as GPIO_GET_CHIPINFO_IOCTL describes it. */
export interface ChipInfo {
  /** Kernel name, e.g. gpiochip0. */
  name: string;
  /** Label, e.g. pinctrl-rp1. */
  label: string;
  lines: number;
}

export function decodeChipInfo(b: Buffer): ChipInfo {
  return { name: cstr(b, CHIP_INFO.name, GPIO_MAX_NAME_SIZE), label: cstr(b, CHIP_INFO.label, GPIO_MAX_NAME_SIZE), lines: b.readUInt32LE(CHIP_INFO.lines) };
}

/** One line as GPIO_V2_GET_LINEINFO_IOCTL describes it. */
export interface LineInfo {
  offset: number;
  /** Line name ('' when the chip names none). */
  name: string;
  /** Consumer of a line in use ('' when free or unnamed). */
  consumer: string;
  /** gpio_v2_line_flag bits. */
  flags: number;
  /** Debounce period in µs, from a DEBOUNCE attribute (0: none). */
  debounceUs: number;
}

/** A buffer for GPIO_V2_GET_LINEINFO_IOCTL asking for `offset` (the kernel requires the rest zeroed). */
export function lineInfoQuery(offset: number): Buffer {
  const b = Buffer.alloc(LINE_INFO.size);
  b.writeUInt32LE(offset, LINE_INFO.offset);
  return b;
}

export function decodeLineInfo(b: Buffer): LineInfo {
  const n = Math.min(b.readUInt32LE(LINE_INFO.numAttrs), GPIO_V2_LINE_NUM_ATTRS_MAX);
  let debounceUs = 0;
  for (let i = 0; i < n; i++) {
    const at = LINE_INFO.attrs + i * LINE_ATTRIBUTE.size;
    if (b.readUInt32LE(at + LINE_ATTRIBUTE.id) === LINE_ATTR_ID.DEBOUNCE) debounceUs = b.readUInt32LE(at + LINE_ATTRIBUTE.value);
  }
  return {
    offset: b.readUInt32LE(LINE_INFO.offset),
    name: cstr(b, LINE_INFO.name, GPIO_MAX_NAME_SIZE),
    consumer: cstr(b, LINE_INFO.consumer, GPIO_MAX_NAME_SIZE),
    flags: Number(b.readBigUInt64LE(LINE_INFO.flags) & 0xffffffffn),
    debounceUs,
  };
}

/** One line's configuration: flags for all of the request's lines, plus an output value and a debounce period. */
export interface LineConfig {
  flags: number;
  /** For an output: the level to drive at once. */
  output?: 0 | 1;
  /** For an input: debounce period in µs (0 or absent: none). */
  debounceUs?: number;
}

/** Writes a struct gpio_v2_line_config for a one-line request at `at`. */
function writeLineConfig(b: Buffer, at: number, c: LineConfig): void {
  b.fill(0, at, at + LINE_CONFIG.size);
  b.writeBigUInt64LE(BigInt(c.flags), at + LINE_CONFIG.flags);
  let n = 0;
  const attr = (id: number, write: (valueAt: number) => void): void => {
    const a = at + LINE_CONFIG.attrs + n * LINE_CONFIG_ATTRIBUTE.size;
    b.writeUInt32LE(id, a + LINE_CONFIG_ATTRIBUTE.attr + LINE_ATTRIBUTE.id);
    write(a + LINE_CONFIG_ATTRIBUTE.attr + LINE_ATTRIBUTE.value);
    b.writeBigUInt64LE(1n, a + LINE_CONFIG_ATTRIBUTE.mask); // the request's line 0
    n++;
  };
  if (c.output !== undefined) attr(LINE_ATTR_ID.OUTPUT_VALUES, (v) => b.writeBigUInt64LE(BigInt(c.output!), v));
  if (c.debounceUs) attr(LINE_ATTR_ID.DEBOUNCE, (v) => b.writeUInt32LE(c.debounceUs!, v));
  b.writeUInt32LE(n, at + LINE_CONFIG.numAttrs);
}

/** A struct gpio_v2_line_config for GPIO_V2_LINE_SET_CONFIG_IOCTL on a one-line request. */
export function encodeLineConfig(c: LineConfig): Buffer {
  const b = Buffer.alloc(LINE_CONFIG.size);
  writeLineConfig(b, 0, c);
  return b;
}

/** Events the kernel buffers per request before it drops the oldest (0 would mean its default, 16 per line). */
export const EVENT_BUFFER_SIZE = 64;

/** A struct gpio_v2_line_request for one line (pinhole requests each pin on its own, so each is released on its own). */
export function encodeLineRequest(offset: number, consumer: string, c: LineConfig): Buffer {
  const b = Buffer.alloc(LINE_REQUEST.size);
  b.writeUInt32LE(offset, LINE_REQUEST.offsets);
  b.write(consumer.slice(0, GPIO_MAX_NAME_SIZE - 1), LINE_REQUEST.consumer, 'latin1');
  writeLineConfig(b, LINE_REQUEST.config, c);
  b.writeUInt32LE(1, LINE_REQUEST.numLines);
  b.writeUInt32LE(EVENT_BUFFER_SIZE, LINE_REQUEST.eventBufferSize);
  return b;
}

/** The request fd the kernel wrote into a line request. */
export function requestFd(b: Buffer): number {
  return b.readInt32LE(LINE_REQUEST.fd);
}

/** A struct gpio_v2_line_values for line 0 of a request: `value` to set, or 0 to get. */
export function encodeLineValues(value: 0 | 1 = 0): Buffer {
  const b = Buffer.alloc(LINE_VALUES.size);
  b.writeBigUInt64LE(BigInt(value), LINE_VALUES.bits);
  b.writeBigUInt64LE(1n, LINE_VALUES.mask);
  return b;
}

/** Line 0's value in a struct gpio_v2_line_values. */
export function lineValue(b: Buffer): 0 | 1 {
  return (b.readBigUInt64LE(LINE_VALUES.bits) & 1n) === 1n ? 1 : 0;
}

/** One edge event read from a request fd. */
export interface LineEvent {
  /** Kernel timestamp, ns, CLOCK_MONOTONIC by default. */
  timestampNs: bigint;
  edge: 'rising' | 'falling';
  offset: number;
  seqno: number;
  lineSeqno: number;
}

/** Decodes the whole events in `b[0..length)`. */
export function decodeLineEvents(b: Buffer, length: number): LineEvent[] {
  const out: LineEvent[] = [];
  for (let at = 0; at + LINE_EVENT.size <= length; at += LINE_EVENT.size) {
    const id = b.readUInt32LE(at + LINE_EVENT.id);
    if (id !== LINE_EVENT_ID.RISING_EDGE && id !== LINE_EVENT_ID.FALLING_EDGE) continue;
    out.push({
      timestampNs: b.readBigUInt64LE(at + LINE_EVENT.timestampNs),
      edge: id === LINE_EVENT_ID.RISING_EDGE ? 'rising' : 'falling',
      offset: b.readUInt32LE(at + LINE_EVENT.offset),
      seqno: b.readUInt32LE(at + LINE_EVENT.seqno),
      lineSeqno: b.readUInt32LE(at + LINE_EVENT.lineSeqno),
    });
  }
  return out;
}

/**
 * The server's Prometheus metrics (`GET /metrics`), through prom-client. One
 * registry per server, so several servers in one process (tests, the bench)
 * keep theirs apart. Hot-path counts (relayed frames and bytes) are plain
 * numbers the shell bumps; prom-client reads them at scrape time, so a
 * relayed frame costs an addition, not a label lookup.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RouterStats } from './router.js';

/** Where a relayed frame went: to a socket of this node, or one hop to another node. */
export type RelayPath = 'local' | 'forwarded';

/** Counts the shell keeps and the scrape reads. */
export interface HotCounts {
  frames: Record<RelayPath, number>;
  bytes: Record<RelayPath, number>;
}

/** Buckets of the Redis round-trip histogram, in seconds: loopback is ~0.1 ms, a LAN ~1 ms, trouble beyond 50 ms. */
const REDIS_RTT_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1];

/** A server's metrics. */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly hot: HotCounts = { frames: { local: 0, forwarded: 0 }, bytes: { local: 0, forwarded: 0 } };
  private readonly refusals: Counter<'code'>;
  private readonly redisRtt: Histogram;
  private readonly redisErrors: Counter;
  private readonly redisUp: Gauge;

  constructor(stats: () => RouterStats & { sockets: number }, clustered: boolean) {
    const r = this.registry;
    const gauge = (name: string, help: string, read: (s: RouterStats & { sockets: number }) => number): void => {
      new Gauge({
        name,
        help,
        registers: [r],
        collect() {
          this.set(read(stats()));
        },
      });
    };
    // A monotonic count the router keeps: read at scrape time.
    const total = (name: string, help: string, read: (s: RouterStats) => number): void => {
      new Counter({
        name,
        help,
        registers: [r],
        collect() {
          this.reset();
          this.inc(read(stats()));
        },
      });
    };
    gauge('pinhole_connections', 'WebSocket connections open now', (s) => s.sockets);
    gauge('pinhole_rooms', 'rooms held by this node', (s) => s.rooms);
    gauge('pinhole_devices', 'devices connected to rooms of this node', (s) => s.devices);
    gauge('pinhole_controllers', 'controllers in rooms of this node (those forwarded from other nodes included)', (s) => s.controllers);
    total('pinhole_joins_total', 'controllers that joined a room of this node', (s) => s.joined);
    total('pinhole_registers_total', 'devices that registered a room with this node', (s) => s.registered);
    total('pinhole_join_limited_total', 'joins (and pairing-room registers) refused with join-limited', (s) => s.joinLimited);
    total('pinhole_register_limited_total', 'registers refused with register-limited', (s) => s.registerLimited);
    total('pinhole_rate_limited_total', 'frames dropped by the per-socket rate limit', (s) => s.rateLimited);
    const hot = this.hot;
    new Counter({
      name: 'pinhole_relayed_frames_total',
      help: 'relay frames sent on, by path: to a socket of this node, or one hop to another node',
      labelNames: ['path'],
      registers: [r],
      collect() {
        this.reset();
        for (const p of ['local', 'forwarded'] as const) this.inc({ path: p }, hot.frames[p]);
      },
    });
    new Counter({
      name: 'pinhole_relayed_bytes_total',
      help: 'bytes of the relay frames sent on, by path',
      labelNames: ['path'],
      registers: [r],
      collect() {
        this.reset();
        for (const p of ['local', 'forwarded'] as const) this.inc({ path: p }, hot.bytes[p]);
      },
    });
    this.refusals = new Counter({ name: 'pinhole_refusals_total', help: 'error replies sent, by code', labelNames: ['code'], registers: [r] });
    this.redisRtt = new Histogram({
      name: 'pinhole_redis_roundtrip_seconds',
      help: 'round trip of Redis commands',
      buckets: REDIS_RTT_BUCKETS,
      registers: [r],
    });
    this.redisErrors = new Counter({ name: 'pinhole_redis_errors_total', help: 'Redis commands that failed or timed out', registers: [r] });
    this.redisUp = new Gauge({
      name: 'pinhole_redis_up',
      help: '1 while the cluster store answers, 0 while it does not (absent: not clustered)',
      registers: clustered ? [r] : [],
    });
  }

  /** An error reply with `code` went out. */
  refused(code: string): void {
    this.refusals.inc({ code });
  }

  /** A Redis command took `seconds`, or failed. */
  redis(seconds: number | null): void {
    if (seconds === null) {
      this.redisErrors.inc();
      this.redisUp.set(0);
    } else {
      this.redisRtt.observe(seconds);
      this.redisUp.set(1);
    }
  }

  /** The text of a scrape and its content type. */
  async scrape(): Promise<{ text: string; contentType: string }> {
    return { text: await this.registry.metrics(), contentType: this.registry.contentType };
  }
}

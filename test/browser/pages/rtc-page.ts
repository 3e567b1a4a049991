// The page of test/browser/rtc.test.ts: bundled by the harness, driven from Node through
// window.pinhole (page.evaluate) and the functions Node exposes (page.exposeFunction).

import { IdbStateStore, loadOrCreateCertificate } from '../../../platform/browser/idb.js';
import { browserDialer, certFingerprint } from '../../../platform/browser/rtc.js';
import type { DirectAttempt } from '../../../session/index.js';
import type { Transport } from '../../../transport/index.js';

/** What Node exposes to the page (test/browser/rtc.test.ts). */
interface Exposed {
  pinholeSignal(json: string): Promise<void>;
  pinholeFrame(data: string): Promise<void>;
  pinholeEvent(event: string, detail: string): Promise<void>;
}
const w = window as unknown as Window & Exposed & { pinhole: typeof api };

let attempt: DirectAttempt | undefined;
let transport: Transport | undefined;
let store: IdbStateStore | undefined;

const api = {
  /** Loads (or makes) the stored certificate; its fingerprint, and the one a fresh RTCPeerConnection announces in its SDP. */
  async certificate(dbName: string): Promise<{ fingerprint: string; sdpFingerprint: string | undefined; expires: number }> {
    const { certificate, fingerprint } = await loadOrCreateCertificate(dbName);
    const pc = new RTCPeerConnection({ certificates: [certificate] });
    pc.createDataChannel('x');
    const offer = await pc.createOffer();
    pc.close();
    const line = offer.sdp?.split(/\r?\n/).find((l) => l.startsWith('a=fingerprint:sha-256 '));
    if (certFingerprint(certificate) !== fingerprint) throw new Error('certFingerprint disagrees with loadOrCreateCertificate');
    return { fingerprint, sdpFingerprint: line?.slice('a=fingerprint:sha-256 '.length), expires: certificate.expires };
  },

  /** Makes a browserDialer attempt with the stored certificate; signals and frames go to Node. `echo`: frames starting "ping-" come back as "echo:…". */
  async dial(role: 'offerer' | 'answerer', dbName: string): Promise<string> {
    const { certificate, fingerprint } = await loadOrCreateCertificate(dbName);
    attempt = await browserDialer(certificate)(
      role,
      { iceServers: [] },
      (p) => void w.pinholeSignal(JSON.stringify(p)),
      (d) => {
        const s = typeof d === 'string' ? d : `<binary ${d.length}>`;
        void w.pinholeFrame(s);
        if (s.startsWith('ping-')) transport?.send(`echo:${s}`);
      },
    );
    attempt.on('up', (t) => {
      transport = t;
      void w.pinholeEvent('up', t.path);
    });
    attempt.on('down', () => void w.pinholeEvent('down', ''));
    attempt.on('failed', (c) => void w.pinholeEvent('failed', c));
    attempt.on('state', (s) => void w.pinholeEvent('state', s));
    if (role === 'offerer') void attempt.start();
    return fingerprint;
  },

  signal(json: string): Promise<void> {
    if (!attempt) throw new Error('no attempt');
    return attempt.handleSignal(JSON.parse(json));
  },

  send(frame: string): void {
    if (!transport) throw new Error('no channel');
    transport.send(frame);
  },

  async hangUp(): Promise<void> {
    await attempt?.close();
    attempt = undefined;
    transport = undefined;
  },

  async storeOpen(dbName: string): Promise<void> {
    store = await IdbStateStore.open(dbName);
  },

  storeRead(name: string, maxBytes: number): string | null {
    return store!.read(name, maxBytes) ?? null;
  },

  storeReadCode(name: string, maxBytes: number): string {
    try {
      store!.read(name, maxBytes);
      return 'ok';
    } catch (e) {
      return (e as { code?: string }).code ?? 'no-code';
    }
  },

  storeWrite(name: string, text: string): void {
    store!.write(name, text);
  },

  storeCreate(name: string, text: string): boolean {
    return store!.create(name, text);
  },

  storeWhere(name: string): string {
    return store!.where(name);
  },

  async storeFlush(): Promise<string> {
    try {
      await store!.flush();
      return 'ok';
    } catch (e) {
      return (e as { code?: string }).code ?? 'no-code';
    }
  },
};

w.pinhole = api;
document.title = 'ready';

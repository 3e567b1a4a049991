/**
 * `pinhole doctor`: what the network allows, in the manner of
 * `tailscale netcheck`. The tests run in doctor/netcheck.ts; this file only
 * renders the report as text or as one JSON object.
 */
import { type DoctorReport, runDoctor } from '../controller/index.js';
import { sanitizeForTerminal as safe, toJsonLine } from './sanitize.js';

/**
 * `pinhole doctor --gpio`: the GPIO chips of this machine, checked locally
 * (no server): each chip's label and lines (name, direction, who holds it),
 * or why it cannot be opened, with the fix. Loads koffi only when there is a chip.
 */
export async function gpioDoctor(json: boolean, print: (s: string) => void): Promise<void> {
  const { GPIO_DEV_DIR, inspectChips } = await import('../device/gpio/chardev.js');
  const chips = await inspectChips();
  if (json) return print(toJsonLine({ ok: true, chips }));
  if (chips.length === 0) {
    print(`no GPIO chips in ${GPIO_DEV_DIR}: no /dev/gpiochipN (the kernel has no GPIO driver here, or is older than 5.10); --gpio chardev cannot run`);
    return;
  }
  const out: string[] = [];
  for (const c of chips) {
    if (!c.status.ok) {
      out.push(`${c.path}: ${c.status.code}: ${safe(c.status.message)}`);
      continue;
    }
    const i = c.info!;
    out.push(`${c.path}: ${safe(i.name)} '${safe(i.label)}', ${i.lines} lines (pinhole device --gpio chardev --chip ${safe(i.label) || c.path})`);
    for (const l of c.lines ?? []) {
      const flags = [l.direction, l.activeLow ? 'active-low' : '', l.bias ? `pull ${l.bias}` : '', l.debounceUs ? `debounce ${l.debounceUs} us` : '']
        .filter(Boolean)
        .join(' ');
      const held = l.used ? `used by ${l.consumer ? `'${safe(l.consumer)}'` : 'an unnamed consumer'}` : 'free';
      out.push(`  ${String(l.offset).padStart(3)}  ${(safe(l.name) || '-').padEnd(16)} ${flags.padEnd(14)} ${held}`);
    }
  }
  print(out.join('\n'));
}

/** Runs the doctor and prints its report; resolves when done (exit 0 whatever the verdict). */
export async function doctor(opts: { server: string; timeoutMs: number; json: boolean }, print: (s: string) => void): Promise<void> {
  const r = await runDoctor({ server: opts.server, timeoutMs: opts.timeoutMs });
  print(opts.json ? toJsonLine({ ok: true, ...r }) : formatDoctorReport(r));
}

const BEHAVIOUR_MEANING: Record<string, string> = {
  'mapping:endpoint-independent': 'one public port for every destination',
  'mapping:address-dependent': 'a new public port for each destination IP',
  'mapping:address-and-port-dependent': 'a new public port for each destination IP and port: a symmetric NAT',
  'filtering:endpoint-independent': 'anyone may send to your public port once it is open',
  'filtering:address-dependent': 'only IPs you have sent to may answer',
  'filtering:address-and-port-dependent': 'only the exact IP and port you sent to may answer',
};

/** The human report. */
export function formatDoctorReport(r: DoctorReport): string {
  const out: string[] = ['Report:'];
  const item = (label: string, value: string, note?: string) => out.push(`  * ${label}: ${value}${note ? ` (${note})` : ''}`);
  item('Server', r.server);
  item('STUN', r.stun ?? 'none', r.stunAlt ? `alternate ${r.stunAlt}` : undefined);
  item('UDP', r.udp === 'ok' ? 'yes' : r.udp === 'blocked' ? 'no, blocked' : 'not tested', r.notes.udp);
  if (r.publicAddress) {
    const where = r.nat === 'none' ? 'no NAT' : r.nat === 'yes' ? 'behind a NAT' : undefined;
    item(
      'Public address',
      r.publicAddress,
      [where, r.localAddress && r.nat === 'yes' ? `local ${r.localAddress}` : undefined].filter(Boolean).join('; ') || undefined,
    );
  }
  item(
    'Behaviour discovery',
    r.discovery === 'available' ? 'RFC 5780' : r.discovery === 'unavailable' ? 'unavailable on this server' : 'not tested',
    r.notes.discovery,
  );
  for (const k of ['mapping', 'filtering'] as const) {
    const v = r[k];
    const label = k === 'mapping' ? 'Mapping' : 'Filtering';
    item(label, v, r.notes[k] ?? BEHAVIOUR_MEANING[`${k}:${v}`]);
  }
  item('Hairpinning', r.hairpinning === 'not-tested' ? 'not tested' : r.hairpinning, r.notes.hairpinning);
  item('Latency', r.latencyMs === null ? 'n/a' : `${r.latencyMs.toFixed(1)} ms to the STUN server`);
  item('Verdict', r.summary);
  for (const why of r.reasons) out.push(`      - ${why}`);
  return out.join('\n');
}

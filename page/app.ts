/**
 * The controller page: pair with a device by code or link, then drive its
 * pins, over the same protocol and the same Device as the Node controller
 * (platform/browser/controller.ts). Data from the device and the server goes
 * into the DOM as text only (textContent), never as markup.
 *
 * The fragment carries what the server must not see: `#pair=CODE` pairs at
 * once, `#server=wss://…` names the signaling server (for a copy of this page
 * on another origin). It is read once and removed from the address bar.
 */
import type { Device } from '../controller/device.js';
import { BrowserController, type PairedDevice, type Stage } from '../platform/browser/index.js';

/** How often the page times a round trip (device.info) while connected, in ms: live enough for a person, cheap on a relay. */
const RTT_EVERY_MS = 2_000;
/** The window each pin's timeline shows, in ms. */
const TIMELINE_MS = 60_000;
/** How often the timelines are redrawn (they scroll), in ms. */
const TIMELINE_REDRAW_MS = 1_000;
/** Edges kept per pin beyond the window's first: a fast input must not grow memory without bound. */
const MAX_EDGES_PER_PIN = 600;
/** localStorage keys: the server field and the device connected last (not secrets). */
const SERVER_KEY = 'pinhole.server';
const LAST_KEY = 'pinhole.last';

type Level = 0 | 1;
type Mode = 'in' | 'out';

/** Where the page is: one field, changed only by setPhase(). */
type PagePhase =
  | { name: 'setup' }
  | { name: 'connecting'; device: string }
  | { name: 'open'; device: string; dev: Device; timers: ReturnType<typeof setInterval>[] };

interface PinView {
  pin: number;
  /** The mode the page shows; `modeSet`: this page has set it on the device (a read or watch makes an unset pin an input). */
  mode: Mode;
  modeSet: boolean;
  level: Level | undefined;
  edges: { t: number; v: Level }[];
  root: HTMLLIElement;
  control: HTMLElement;
  timeline: SVGPolylineElement;
}

const el = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const stateText = el<HTMLSpanElement>('state');
const errorText = el<HTMLParagraphElement>('error');
const codeInput = el<HTMLInputElement>('code');
const serverInput = el<HTMLInputElement>('server');
const relayOnly = el<HTMLInputElement>('relay-only');
const devicesList = el<HTMLUListElement>('devices');
const noneText = el<HTMLParagraphElement>('none');
const setup = el<HTMLElement>('setup');
const dashboard = el<HTMLElement>('dashboard');
const deviceName = el<HTMLHeadingElement>('device-name');
const pathText = el<HTMLOutputElement>('path');
const rttText = el<HTMLOutputElement>('rtt');
const detailsText = el<HTMLParagraphElement>('details');
const pinsList = el<HTMLUListElement>('pins');

let phase: PagePhase = { name: 'setup' };
let controller: Promise<BrowserController> | undefined;
let controllerDirect = true;
const pins = new Map<number, PinView>();

/** A PinholeError's code in plain words. Only our own words: a device's or server's text never reaches the page. */
function words(e: unknown): string {
  const code = (e as { code?: string } | undefined)?.code;
  const message = (e as { message?: string } | undefined)?.message ?? String(e);
  switch (code) {
    case 'wrong-code':
      return 'That code is wrong. The device shows a new one now: type that.';
    case 'code-spent':
      return 'That code was already used. Type the new code the device shows.';
    case 'unknown-room':
    case 'bad-room':
      return 'No device has that code. Check it, or use the newest code the device shows.';
    case 'usage':
      return message; // our own parser's words about what was typed
    case 'device-offline':
      return 'The device is not connected to the server right now.';
    case 'server-unreachable':
      return 'Cannot reach the signaling server.';
    case 'version':
      return 'The signaling server speaks another protocol version.';
    case 'timeout':
      return 'The device did not answer in time.';
    case 'not-paired':
      return 'The device no longer knows this browser (revoked or reset). Pair again with a new code.';
    case 'device-changed':
      return "The device's identity key changed. Pair again only if you trust it.";
    case 'fingerprint-mismatch':
      return 'The direct path did not carry the certificate the device signed: refused.';
    case 'device-busy':
      return 'The device already serves as many controllers as it takes. Try again later.';
    case 'room-full':
      return 'Someone else is using that code right now.';
    case 'not-allowed':
      return 'This browser is not allowed to do that on this device.';
    case 'preempted':
      return 'Another write stopped that blink.';
    case 'link-closed':
    case 'peer-left':
      return 'The connection to the device closed.';
    case 'not-admitted':
      return 'The server dropped the connection: the device did not finish the handshake.';
    case undefined:
      return 'Something went wrong in the page.';
    default:
      return `Failed: ${code}.`;
  }
}

function showError(e: unknown): void {
  errorText.textContent = e === undefined ? '' : words(e);
}

function setState(s: string): void {
  stateText.textContent = s;
}

/** The signaling server: the fragment's, else the field's saved value, else this page's own origin. */
function defaultServer(): string {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
}

function currentServer(): string {
  return serverInput.value.trim() || defaultServer();
}

function getController(): Promise<BrowserController> {
  const direct = !relayOnly.checked;
  if (!controller || controllerDirect !== direct) {
    controllerDirect = direct;
    controller = BrowserController.open({ server: currentServer(), direct });
    controller.catch(() => (controller = undefined));
  }
  return controller;
}

/** The one place the page's phase changes. */
function setPhase(next: PagePhase): void {
  const prev = phase;
  if (prev.name === 'open' && (next.name !== 'open' || next.dev !== prev.dev)) {
    for (const t of prev.timers) clearInterval(t);
    void prev.dev.close();
  }
  phase = next;
  setup.hidden = next.name === 'open';
  dashboard.hidden = next.name !== 'open';
  if (next.name === 'setup') setState('offline');
}

async function renderDevices(): Promise<void> {
  let list: PairedDevice[] = [];
  try {
    list = (await getController()).devices();
  } catch (e) {
    showError(e);
  }
  devicesList.replaceChildren();
  noneText.hidden = list.length > 0;
  for (const d of list) {
    const li = document.createElement('li');
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = d.name;
    const connectBtn = button(`Connect ${d.name}`, 'Connect', () => void open(d.name));
    const removeBtn = button(`Remove ${d.name}`, 'Remove', () => void remove(d.name), true);
    const fp = document.createElement('span');
    fp.className = 'fp';
    fp.textContent = d.fingerprint;
    li.append(name, connectBtn, removeBtn, fp);
    devicesList.append(li);
  }
}

function button(label: string, text: string, onClick: () => void, secondary = false): HTMLButtonElement {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = text;
  b.setAttribute('aria-label', label);
  if (secondary) b.className = 'secondary';
  b.addEventListener('click', onClick);
  return b;
}

async function remove(name: string): Promise<void> {
  if (phase.name === 'open' && phase.device === name) setPhase({ name: 'setup' });
  try {
    await (await getController()).remove(name);
    if (localStorage.getItem(LAST_KEY) === name) localStorage.removeItem(LAST_KEY);
  } catch (e) {
    showError(e);
  }
  await renderDevices();
}

/** Shows an attempt's stages while it is the latest. */
const stageFor =
  (mine: number) =>
  (s: Stage): void => {
    if (mine === attempts) setState(s);
  };

/** Counts connection attempts: the person's latest one wins (Pair while reconnecting to the last device, say). */
let attempts = 0;

async function pair(code: string): Promise<void> {
  const mine = ++attempts;
  showError(undefined);
  setPhase({ name: 'connecting', device: '' });
  setState('connecting');
  try {
    const dev = await (await getController()).pair(code, { server: currentServer(), onStage: stageFor(mine) });
    if (mine !== attempts) return void dev.close();
    codeInput.value = '';
    const name = dev.pairedAs?.name ?? dev.peer?.name ?? '';
    localStorage.setItem(LAST_KEY, name);
    await renderDevices();
    await show(name, dev);
  } catch (e) {
    if (mine !== attempts) return;
    setPhase({ name: 'setup' });
    showError(e);
  }
}

async function open(name: string): Promise<void> {
  const mine = ++attempts;
  showError(undefined);
  setPhase({ name: 'connecting', device: name });
  setState('connecting');
  try {
    const dev = await (await getController()).connect(name, { onStage: stageFor(mine) });
    if (mine !== attempts) return void dev.close();
    localStorage.setItem(LAST_KEY, name);
    await show(name, dev);
  } catch (e) {
    if (mine !== attempts) return;
    setPhase({ name: 'setup' });
    showError(e);
  }
}

/** The dashboard for a connected device. */
async function show(name: string, dev: Device): Promise<void> {
  const timers = [setInterval(() => void timeRoundTrip(dev), RTT_EVERY_MS), setInterval(redrawTimelines, TIMELINE_REDRAW_MS)];
  setPhase({ name: 'open', device: name, dev, timers });
  deviceName.textContent = name;
  showPath(dev);
  dev.on('path', () => showPath(dev));
  dev.on('disconnected', (e) => {
    setState('reconnecting');
    showError(e);
  });
  dev.on('reconnected', () => {
    showError(undefined);
    showPath(dev);
  });
  dev.on('close', (e) => {
    if (phase.name === 'open' && phase.dev === dev) {
      setPhase({ name: 'setup' });
      showError(e);
    }
  });
  dev.on('change', (c) => onLevel(c.pin, c.value, true));
  dev.on('resync', (r) => onLevel(r.pin, r.value, r.value !== r.previous));
  pinsList.replaceChildren();
  pins.clear();
  try {
    const info = await dev.info();
    detailsText.textContent = `${info.board} · ${info.backend} · ${info.controllers} controller(s) connected · rights: ${info.rights.access}`;
    for (const pin of info.pins) addPin(dev, pin);
    for (const pin of info.pins) {
      dev.watch(pin).then(
        (v) => onLevel(pin, v, false),
        () => undefined, // a pin this browser may not read stays blank
      );
    }
  } catch (e) {
    showError(e);
  }
}

function showPath(dev: Device): void {
  const p = dev.path;
  pathText.textContent = p;
  if (p === 'relay' || p === 'direct' || p === 'turn') setState(p);
}

async function timeRoundTrip(dev: Device): Promise<void> {
  if (phase.name !== 'open' || phase.dev !== dev || dev.path === 'none') return;
  const t0 = performance.now();
  try {
    const info = await dev.info();
    const ms = performance.now() - t0;
    rttText.textContent = `${ms < 10 ? ms.toFixed(1) : ms.toFixed(0)} ms`;
    detailsText.textContent = `${info.board} · ${info.backend} · ${info.controllers} controller(s) connected · rights: ${info.rights.access}`;
  } catch {
    rttText.textContent = '';
  }
}

function addPin(dev: Device, pin: number): void {
  const root = document.createElement('li');
  root.className = 'pin';
  const head = document.createElement('div');
  head.className = 'row';
  const title = document.createElement('h3');
  title.textContent = `Pin ${pin}`;
  const mode = document.createElement('select');
  mode.setAttribute('aria-label', `pin ${pin} mode`);
  // The device does not report modes: until one is chosen here the switch sets `out` on first use.
  for (const [value, text] of [
    ['', 'mode…'],
    ['out', 'output'],
    ['in', 'input'],
  ] as const) {
    const o = document.createElement('option');
    o.value = value;
    o.textContent = text;
    mode.append(o);
  }
  head.append(title, mode);
  const controlRow = document.createElement('div');
  controlRow.className = 'row';
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('class', 'timeline');
  svg.setAttribute('viewBox', '0 0 600 40');
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `pin ${pin} edges in the last minute`);
  const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
  svg.append(line);
  const blink = document.createElement('div');
  blink.className = 'blink';
  const times = numberInput(`pin ${pin} blink times`, 20, 1, 10_000);
  const interval = numberInput(`pin ${pin} blink interval (ms)`, 300, 10, 60_000);
  const blinkBtn = button(`Blink pin ${pin}`, 'Blink', () => {
    showError(undefined);
    dev.blink(pin, { times: Number(times.value), intervalMs: Number(interval.value) }).catch(showError);
  });
  blink.append(times, document.createTextNode('×'), interval, document.createTextNode('ms'), blinkBtn);
  root.append(head, controlRow, svg, blink);
  pinsList.append(root);
  const view: PinView = { pin, mode: 'out', modeSet: false, level: undefined, edges: [], root, control: controlRow, timeline: line };
  pins.set(pin, view);
  renderControl(dev, view);
  mode.addEventListener('change', () => {
    const m = mode.value as Mode | '';
    if (m === '') return;
    showError(undefined);
    dev.mode(pin, m).then(
      () => {
        view.mode = m;
        view.modeSet = true;
        renderControl(dev, view);
      },
      (e: unknown) => {
        mode.value = view.modeSet ? view.mode : '';
        showError(e);
      },
    );
  });
}

function numberInput(label: string, value: number, min: number, max: number): HTMLInputElement {
  const i = document.createElement('input');
  i.type = 'number';
  i.value = String(value);
  i.min = String(min);
  i.max = String(max);
  i.setAttribute('aria-label', label);
  return i;
}

/** An output gets a switch named "pin N"; an input a live level named "pin N level". */
function renderControl(dev: Device, v: PinView): void {
  v.control.replaceChildren();
  if (v.mode === 'out') {
    const sw = document.createElement('button');
    sw.type = 'button';
    sw.setAttribute('role', 'switch');
    sw.setAttribute('aria-label', `pin ${v.pin}`);
    sw.addEventListener('click', () => {
      const next: Level = v.level === 1 ? 0 : 1;
      showError(undefined);
      const ready = v.modeSet ? Promise.resolve() : dev.mode(v.pin, 'out').then(() => void (v.modeSet = true));
      ready.then(() => dev.write(v.pin, next)).then(() => onLevel(v.pin, next, false), showError);
    });
    v.control.append(sw);
  } else {
    const level = document.createElement('output');
    level.className = 'level';
    level.setAttribute('aria-label', `pin ${v.pin} level`);
    v.control.append(document.createTextNode('Level'), level);
  }
  paintLevel(v);
}

function paintLevel(v: PinView): void {
  const c = v.control.querySelector('[role="switch"]');
  if (c) {
    c.setAttribute('aria-checked', v.level === 1 ? 'true' : 'false');
    c.textContent = v.level === 1 ? 'ON' : 'OFF';
  }
  const l = v.control.querySelector('.level');
  if (l) l.textContent = v.level === undefined ? '–' : String(v.level);
}

/** A pin's level as the device reported it (`edge`: it changed, so the timeline gets a step). */
function onLevel(pin: number, value: Level, edge: boolean): void {
  const v = pins.get(pin);
  if (!v) return;
  const now = performance.now();
  if (v.level === undefined || edge || v.level !== value) v.edges.push({ t: now, v: value });
  if (v.edges.length > MAX_EDGES_PER_PIN) v.edges.splice(0, v.edges.length - MAX_EDGES_PER_PIN);
  v.level = value;
  paintLevel(v);
  drawTimeline(v, now);
}

function redrawTimelines(): void {
  const now = performance.now();
  for (const v of pins.values()) drawTimeline(v, now);
}

/** A step line of the last TIMELINE_MS: high at the top, low at the bottom. */
function drawTimeline(v: PinView, now: number): void {
  const start = now - TIMELINE_MS;
  const x = (t: number): number => Math.max(0, ((t - start) / TIMELINE_MS) * 600);
  const y = (l: Level): number => (l === 1 ? 6 : 34);
  const pts: string[] = [];
  let level: Level | undefined;
  for (const e of v.edges) {
    if (e.t < start) {
      level = e.v;
      continue;
    }
    if (level !== undefined) pts.push(`${x(e.t)},${y(level)}`);
    else pts.push(`${x(e.t)},${y(e.v)}`);
    pts.push(`${x(e.t)},${y(e.v)}`);
    level = e.v;
  }
  if (level === undefined) {
    v.timeline.setAttribute('points', '');
    return;
  }
  if (pts.length === 0) pts.push(`0,${y(level)}`);
  pts.push(`600,${y(level)}`);
  v.timeline.setAttribute('points', pts.join(' '));
}

// Wiring.
el<HTMLFormElement>('pair-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  void pair(codeInput.value);
});
el<HTMLButtonElement>('disconnect').addEventListener('click', () => {
  attempts++;
  setPhase({ name: 'setup' });
  void renderDevices();
});
serverInput.addEventListener('change', () => {
  const v = serverInput.value.trim();
  if (v) localStorage.setItem(SERVER_KEY, v);
  else localStorage.removeItem(SERVER_KEY);
});

async function start(): Promise<void> {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);
  const server = fragment.get('server') ?? localStorage.getItem(SERVER_KEY);
  serverInput.value = server ?? '';
  if (fragment.get('server')) localStorage.setItem(SERVER_KEY, fragment.get('server')!);
  if (!serverInput.value) serverInput.placeholder = defaultServer();
  await renderDevices();
  const code = fragment.get('pair');
  if (code) {
    codeInput.value = code;
    return pair(code);
  }
  const last = localStorage.getItem(LAST_KEY);
  if (last && (await getController()).devices().some((d) => d.name === last)) await open(last);
}

void start();

/** --help texts. Kept in step with docs/cli.md. */
const main = `pinhole: drive a board's GPIO pins from anywhere, paired by a code.
Direct over WebRTC when the network allows, relayed through the server when not.

Usage:
  pinhole demo                                   everything in one process, on a simulated board
  pinhole signal [--host H] [--port P] [--stun-port U] [--stun-host S] [--stun-alt-host A]
                 [--allow-origin O,...] [--trust-proxy IP,...] [--no-page] [--redis URL] [--metrics-host H --metrics-port P]
  pinhole device --server URL [--name NAME] [--gpio sim|mraa|chardev] [--pins LIST] [--json]
                 [--max-controllers N] [--pair-rights read-only|full] [--pair-pins LIST]
                 [--page-url URL] [--no-qr]
  pinhole device --controllers | --revoke NAME      list or remove trusted controllers
  pinhole device --allow NAME [--pins LIST] | --read-only NAME [--pins LIST]
                                                    set a trusted controller's rights
  pinhole control --server URL --code CODE COMMAND  first time: pair with the code the device printed
  pinhole control NAME COMMAND                      afterwards: by the device's name, no code
      COMMAND: write PIN 0|1 | read PIN | mode PIN in|out [--pull up|down|disabled]
               | blink PIN [--times N] [--interval MS]
               | watch PIN [--count N] | info | shell
  pinhole page --out DIR | --serve [--host H] [--port P]   the controller page, as files or served here
  pinhole doctor --server URL [--json] [--timeout MS]   what your network allows (UDP, NAT type)
  pinhole mqtt --broker mqtt://HOST[:PORT] (--outputs LIST | --inputs LIST) DEVICE...
                                                    paired devices' pins on MQTT, with Home
                                                    Assistant discovery
  pinhole doctor --gpio [--json]                 this machine's GPIO chips, their lines and access

Run 'pinhole COMMAND --help' for details. Exit codes: 0 ok, 2 usage, 3 refused (wrong or
spent code, not paired, tampering detected), 4 server or device unreachable, busy or timed out,
5 command refused by the device (also: not allowed by this controller's rights, preempted).`;

const signal = `pinhole signal [--host H] [--port P] [--stun-port U] [--stun-host S] [--stun-alt-host A] [--allow-origin O,...]
               [--trust-proxy IP,...] [--no-page]
               [--redis redis[s]://[:PASSWORD@]HOST:PORT[/DB]] [--metrics-host H --metrics-port P]

Runs a signaling server: WebSocket signaling and relay on --port, a STUN server on UDP --stun-port.
  --host H           address to bind (default 0.0.0.0)
  --port P           WebSocket/HTTP port (default 8080; 0 = any free port). GET /healthz answers 200.
  --stun-port U      STUN UDP port (default 3478; 0 = any free port)
  --stun-host S      address STUN binds (default: --host). Behind a reverse proxy --host is
                     loopback, but STUN (UDP) must face the clients: --stun-host 0.0.0.0
  --stun-alt-host A  a second IP address of this machine: enables NAT behaviour discovery
                     (RFC 5780) for 'pinhole doctor'. STUN then listens on H and A, each on U and
                     U+1 (with --stun-port 0, a free pair). Needs --host (or --stun-host) to be
                     this machine's primary IP (not 0.0.0.0), of the same family as A.
  --allow-origin O   web pages allowed to connect, by origin: https://host[:port], comma-separated
                     or repeated, or * (default: *, any). A browser's upgrade from another origin
                     gets HTTP 403 and an origin-refused line; clients that send no Origin (the
                     device, pinhole control) are always let in.
  --trust-proxy IP   a reverse proxy in front of this server (comma-separated or repeated): its
                     X-Forwarded-For names the client, whose address the per-address limits then
                     count. Default: none; the header is ignored and limits see the socket's address.
  --no-page          do not serve the controller page at / (it is served by default: a browser
                     then runs this server's code; see 'pinhole page' for a copy you host yourself)
  --redis URL        one node of a cluster: every node given the same Redis shares rooms,
                     limits and forwarding (docs/deploy.md); rediss:// for TLS. Default: a
                     single node. The node id is random at each start ("node" in the first line).
  --metrics-host H --metrics-port P
                     serve GET /metrics (Prometheus text) on a listener of its own instead of
                     on --port (P 0 = any free port); the two go together
SIGINT/SIGTERM drain: every client is told goaway and moves to another server, then it exits.
The first output line is JSON with the bound addresses; every later line is one JSON event.
Codes and message bodies are never logged.`;

const page = `pinhole page --out DIR
pinhole page --serve [--host H] [--port P]

The controller page: pair from a browser or a phone and drive the pins, over the same protocol
as 'pinhole control' (direct through the browser's WebRTC, else the server's relay).
  --out DIR   write its files (index.html, app.HASH.js, app.HASH.css, manifest.json) to DIR,
              for any static host you trust
  --serve     serve them here, on --host (default 127.0.0.1) and --port (default 8081),
              until SIGINT/SIGTERM
Served this way the signaling server stays untrusted: give the page the server in the link
(#server=wss://HOST) or its settings. 'pinhole signal' serves the same page at / for
convenience, but a page a server serves runs that server's code (docs/security.md).
'pinhole --version' prints the bundle's SHA-256, which index.html also pins with SRI.`;

const device = `pinhole device --server URL [--code CODE] [--name NAME] [--state-dir DIR]
                [--gpio sim|mraa|chardev [--chip C] [--active-low LIST] [--debounce P=US,...]] [--pins LIST] [--max-controllers N] [--pair-rights read-only|full] [--pair-pins LIST]
                [--json] [--no-direct] [--no-pairing] [--safe-state L [--safe-after S]]
                [--page-url URL] [--no-qr]
pinhole device [--state-dir DIR] [--json] --controllers | --revoke NAME
pinhole device [--state-dir DIR] [--json] --allow NAME [--pins LIST] | --read-only NAME [--pins LIST]

Registers this board with the server, prints 'pairing code: CODE', a 'pairing link:' that opens
the controller page with the code (PAGE#pair=CODE) and its QR code, then serves up to
--max-controllers controllers at once until SIGINT/SIGTERM, one line as each connects and leaves.
A code is good for ONE attempt: whoever tries it spends it, and a new code is printed at once.
Paired controllers come back with no code ('pinhole control NAME ...').
  --server URL    signaling server, ws://host:port (or env PINHOLE_SERVER); several servers of
                  one deployment, comma-separated, are tried in a random order
  --code CODE     the first pairing code (RRRR-SSS-SSS: 10 symbols of
                  23456789ABCDEFGHJKMNPQRSTVWXYZ); later codes are generated
  --name NAME     name shown to controllers, who save the device under it (default: host name)
  --state-dir DIR identity key, DTLS certificate and trusted controllers
                  (default $XDG_CONFIG_HOME/pinhole, else ~/.config/pinhole)
  --gpio KIND     sim (default): a simulated board; mraa: real pins through libmraa
                  (set PINHOLE_LIBMRAA=/path/to/libmraa.so if it is not on the loader path);
                  chardev: real pins through /dev/gpiochipN (Raspberry Pi 4/5, most boards)
  --chip C        chardev: the chip by label, name or path (default: the only chip)
  --active-low LIST  chardev: pins read and driven inverted
  --debounce P=US,...  chardev: debounce period of input pins in microseconds
  --pins LIST     pins a controller may touch, e.g. 13,20-23 (default: all); with chardev, line
                  offsets or line names, e.g. GPIO17,GPIO27
  --max-controllers N  controllers served at once, 1 to 64 (default 8); one more is refused
                  with device-busy
  --pair-rights R read-only or full (default): the rights the codes this run prints give; a
                  read-only controller may read, watch and info only
  --pair-pins LIST the pins the codes this run prints give (default: all; within --pins)
  --json          one JSON object per line ({"event":"code","code":"...","link":"..."} first)
  --page-url URL  the controller page the pairing link opens (default: the one the server serves,
                  wss://h:p/... -> https://h:p/, ws://h:p/... -> http://h:p/); the link adds
                  server=URL to the fragment when the page would not find the server by itself
  --no-qr         print the pairing link without its QR code
  --no-direct     relay only: never open a WebRTC data channel
  --no-pairing    print no code: only controllers paired before may connect
  --safe-state L  levels to set when no controller has been connected for a while, e.g. 20=0,13=1
                  (off by default; the pins become outputs)
  --safe-after S  seconds with no controller before the safe state is set (default 30, min 1)
  --ice-server S  extra ICE server, repeatable: stun:HOST:PORT or turn:USER:PASS@HOST:PORT
                  (werift uses the first STUN and the first TURN server; a stun: here replaces
                  the signaling server's own)
  --controllers   list the trusted controllers and their rights and exit (no server needed)
  --revoke NAME   remove a trusted controller (by name or fingerprint) and exit; its next
                  connection is refused
  --allow NAME    give a trusted controller (by name or fingerprint) full access, on the pins
                  of --pins LIST if given, else on all pins; prints its rights and exits
  --read-only NAME  make a trusted controller read-only (read, watch, info), keeping its pins
                  unless --pins LIST is given; prints its rights and exits
                  A running device applies --allow and --read-only from the controller's next
                  command; an unknown NAME exits 2 (unknown-controller)`;

const control = `pinhole control NAME [--state-dir DIR] [--json] [--timeout MS] COMMAND
pinhole control --server URL --code CODE [--name ME] [--as NAME] [--replace] [--state-dir DIR]
                [--json] COMMAND

The first form talks to a device paired before, by its name. The second pairs with a new device
using the code it printed (a PAKE checks the code on both sides; the server never learns it),
saves it under its name (or --as NAME), then runs COMMAND:
  write PIN 0|1                         drive an output
  read PIN                              read a pin
  mode PIN in|out [--pull up|down|disabled]  set the direction, and the bias with --pull
  blink PIN [--times N] [--interval MS] toggle N times (default 20), MS apart (default 300)
  watch PIN [--count N]                 print edges until Ctrl-C or N edges, each with who caused
                                        it: a controller's name, or input
  info                                  device name, backend, pins, connected controllers, your
                                        rights and current path
  shell                                 interactive prompt running these commands on one session
Options:
  --server URL    signaling server, ws://host:port (or env PINHOLE_SERVER; a comma-separated list
                  of one deployment's servers works too); with NAME, default:
                  the server saved at pairing
  --code CODE     first pairing only: the code the device printed last (case and dashes do not matter)
  --name ME       the name the device lists this controller under (default: host name)
  --as NAME       with --code: save the device under NAME instead of the name it gives itself
  --replace       with --code: if ANOTHER device is saved under that name (case does not
                  matter), replace it. Without it that pairing fails (name-taken, exit 3) and
                  saves nothing; pair again with the new code the device printed, adding --as
                  or --replace. The same device pairing again just updates its entry
  --state-dir DIR identity key, DTLS certificate and paired devices
                  (default $XDG_CONFIG_HOME/pinhole, else ~/.config/pinhole)
  --json          one compact JSON object per line; the last carries "path"
  --timeout MS    for connecting and for each command (default 10000)
  --no-direct     relay only (write, read and info always are: one request is quicker on the
                  relay than setting up a direct path)
  --ice-server S  extra ICE server, repeatable (as for 'pinhole device'); with TURN the path
                  may be "turn"
Exit codes: 0 ok, 2 usage, 3 refused (wrong, spent or unknown code; not paired or revoked; device
identity changed; tampering detected), 4 device unreachable, timed out or busy (device-busy: it
already serves as many controllers as it takes), 5 the device refused the command (pin not
allowed, bad value; not-allowed: your rights do not cover it; preempted: another command on
the pin stopped this blink).`;

const demo = `pinhole demo [--times N] [--interval MS] [--json] [--no-direct]

Starts a signaling server on a free loopback port, a device on the simulated board and a controller,
pairs them and blinks pin 20 (20 toggles, 300 ms apart, like the original script), showing the path
each command took and when the link became direct.`;

const doctor = `pinhole doctor --server URL [--json] [--timeout MS]
pinhole doctor --gpio [--json]

Tells what your network allows, like 'tailscale netcheck': whether UDP works, your public address,
your NAT's mapping and filtering behaviour (RFC 5780 tests against the server's STUN server, which
needs 'pinhole signal --stun-alt-host'), hairpinning, latency, and a verdict: direct connections
likely, or relay will be used, and why.
  --server URL    signaling server, ws://host:port (or env PINHOLE_SERVER); of a list, the first
  --json          one JSON object instead of the text report
  --timeout MS    for the server's /healthz and for each STUN test (default 1500)
  --gpio          instead: list this machine's GPIO chips (label, lines, who holds them) and
                  whether this user may open them, with the fix when not (no server needed)
Exit codes: 0 the tests ran (whatever the verdict), 2 usage, 4 server unreachable.`;

const mqtt = `pinhole mqtt --broker mqtt[s]://[USER@]HOST[:PORT] [--outputs LIST] [--inputs LIST]
             [--prefix P] [--discovery-prefix P] [--blink-times N] [--blink-interval MS]
             [--username U] [--password-file FILE] [--ca FILE] [--cert FILE --key FILE]
             [--state-dir DIR] [--name ME] [--timeout MS] [--no-direct] [--json] DEVICE...

Runs as a paired controller next to your MQTT broker and serves until SIGINT/SIGTERM (which
publish offline and exit 0). Each DEVICE (paired before with 'pinhole control --code') becomes
one Home Assistant device through MQTT discovery: each output a switch and a blink button,
each input a binary sensor. Sessions reconnect by themselves; the availability topic reads
online only while the device's session is up. Topics (docs/mqtt.md):
  P/DEVICE/availability  online|offline (retained, last will)   P/DEVICE/PIN/state  ON|OFF (retained)
  P/DEVICE/PIN/set       ON|OFF (outputs)                       P/DEVICE/PIN/blink  PRESS (outputs)
  --broker URL       the broker; mqtts:// for TLS (default ports 1883, 8883)
  --outputs LIST     output pins, e.g. 20,21 (within the pins the device allows)
  --inputs LIST      input pins, e.g. 5-7
  --prefix P         topic prefix (default pinhole)
  --discovery-prefix P  Home Assistant's discovery prefix (default homeassistant); configs
                     are published again when P/status says online
  --blink-times N --blink-interval MS  what a blink button does (default: the device's, 20 x 300 ms)
  --username U       broker user (or env PINHOLE_MQTT_USERNAME, or USER@ in --broker)
  --password-file FILE  broker password, first line of FILE (or env PINHOLE_MQTT_PASSWORD);
                     a password in --broker works but other users can see it in ps
  --ca FILE          CA certificate(s) to trust for mqtts:// (default: the system's)
  --cert FILE --key FILE  a client certificate and its key, PEM
  --state-dir DIR    paired devices and this controller's identity, as for 'pinhole control'
  --name ME          the name the devices list this controller under (default: host name)
  --timeout MS       for connecting and for each command (default 10000)
  --no-direct        relay only
  --json             one JSON object per event line
Logs never show passwords or pairing material. Exit codes: 0 stopped, 2 usage, 3 not paired
(unknown-device) or the broker refused the credentials (broker-refused).`;

export const HELP = { main, signal, device, control, page, demo, doctor, mqtt };

#!/usr/bin/env bash
# The GPIO tier: boots a small QEMU VM with a Debian 7.x kernel (the first
# with CONFIG_GPIO_SIM=m), loads gpio-sim, creates a simulated chip through
# configfs and runs the compiled tests of test/gpio/ (or the bench) inside,
# against the real kernel GPIO uAPI v2.
#
# Usage: bash test/setup/gpio-vm.sh [--bench]
#   --bench   run dist/bench/gpio.js instead of the tests
#
# - The kernel and its modules come from trixie-backports, fetched with
#   `apt-get download` through a private apt list and state dir built from
#   this machine's own Debian mirror; /etc/apt is only read. Cached under
#   .cache/gpio-vm (about 120 MB once).
# - The host root is shared read-only over 9p (cache=loose: without it
#   loading koffi takes 13 s); output comes back through a read-write 9p
#   share, and so does the exit code.
# - One vCPU in software emulation (TCG): /dev/kvm here is a software
#   back-end that fails with real kernels, and two vCPUs oopsed at boot.
#
# Where it cannot run (no qemu, no download, no build) it prints one line
# saying why and exits 0; with CI=true that is a failure (exit 1) instead.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CACHE="${PINHOLE_GPIO_VM_CACHE:-$ROOT/.cache/gpio-vm}"
MODE=test
[[ "${1:-}" == --bench ]] && MODE=bench

# The whole run, boot included, in seconds: boot takes 4-5 s and each test
# file 9-12 s under TCG; a guest that hangs must not hang CI.
VM_TIMEOUT_S="${PINHOLE_GPIO_VM_TIMEOUT:-900}"
# Guest memory: node with werift (the agent test) needs a few hundred MB.
VM_MEM_MB=1536

skip() {
  if [[ "${CI:-}" == true ]]; then
    echo "gpio-vm: cannot run: $1 (CI=true: failing instead of skipping)" >&2
    exit 1
  fi
  echo "gpio-vm: skipped: $1"
  exit 0
}

for t in qemu-system-x86_64 cpio xz; do
  command -v "$t" >/dev/null || skip "$t is not installed (apt-get install qemu-system-x86 busybox-static cpio xz-utils)"
done
# The initramfs has no libc: busybox must be the static one.
BUSYBOX=/bin/busybox
{ [[ -x $BUSYBOX ]] && ! ldd "$BUSYBOX" >/dev/null 2>&1 && "$BUSYBOX" --list 2>/dev/null | grep -qx insmod; } ||
  skip "no static busybox at $BUSYBOX (apt-get install busybox-static)"
if [[ $MODE == test ]]; then
  compgen -G "$ROOT/dist/test/gpio/*.test.js" >/dev/null || skip "no compiled tests in dist/test/gpio (run npm run build)"
else
  [[ -f $ROOT/dist/bench/gpio.js ]] || skip "dist/bench/gpio.js is not built (run npm run build)"
fi

# --- kernel and modules -----------------------------------------------------
fetch_kernel() {
  local apt="$CACHE/apt"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/etc/preferences.d" "$CACHE/debs"
  # The machine's own Debian mirror, as its apt sources name it.
  local mirror
  mirror="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2; exit}')"
  [[ -n $mirror ]] || mirror="$(awk '/^deb / && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list 2>/dev/null | head -n1)"
  [[ -n $mirror ]] || return 10
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie-backports main" >"$apt/etc/sources.list"
  APT_OPTS=(-o "Dir::Etc::sourcelist=$apt/etc/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::Etc::preferencesparts=$apt/etc/preferences.d"
    -o "Dir::State::lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o Dir::State::status=/dev/null -o APT::Architecture=amd64 -o Debug::NoLocking=1)
  apt-get "${APT_OPTS[@]}" -qq update >/dev/null 2>&1 || return 11
  local abi
  abi="$(apt-cache "${APT_OPTS[@]}" show linux-image-amd64 2>/dev/null | sed -n 's/^Depends:.*linux-image-\([0-9][^ ,]*-amd64\).*/\1/p' | head -n1)"
  [[ $abi == 7.* || $abi == [89].* ]] || return 12
  (cd "$CACHE/debs" && apt-get "${APT_OPTS[@]}" -qq download "linux-binary-$abi" "linux-modules-$abi" >/dev/null 2>&1) || return 13
  local k="$CACHE/kernel-$abi.tmp"
  rm -rf "$k" && mkdir -p "$k"
  for d in "$CACHE"/debs/linux-binary-"$abi"_*.deb "$CACHE"/debs/linux-modules-"$abi"_*.deb; do dpkg-deb -x "$d" "$k"; done
  [[ -f $k/usr/lib/modules/$abi/vmlinuz || -f $k/boot/vmlinuz-$abi ]] || return 14
  rm -rf "$k/usr/share" # docs only (and symlinks the linter trips on)
  rm -rf "$CACHE/kernel-$abi" && mv "$k" "$CACHE/kernel-$abi"
  echo "$abi" >"$CACHE/abi"
  rm -f "$CACHE"/debs/*.deb
}
if [[ ! -f $CACHE/abi || ! -d $CACHE/kernel-$(cat "$CACHE/abi") ]]; then
  echo "gpio-vm: fetching the trixie-backports kernel into $CACHE (once, about 120 MB)"
  rc=0
  fetch_kernel || rc=$?
  case $rc in
    0) ;;
    10) skip "no Debian mirror found in /etc/apt sources" ;;
    11) skip "apt-get update of trixie-backports failed (no network to the Debian mirror?)" ;;
    12) skip "trixie-backports has no 7.x kernel (linux-image-amd64 depends on something else)" ;;
    13) skip "apt-get download of the kernel packages failed" ;;
    *) skip "the kernel packages did not unpack as expected" ;;
  esac
fi
ABI="$(cat "$CACHE/abi")"
KDIR="$CACHE/kernel-$ABI"
MODDIR="$KDIR/usr/lib/modules/$ABI"
[[ -d $MODDIR ]] || MODDIR="$KDIR/lib/modules/$ABI"
KERNEL="$MODDIR/vmlinuz"
[[ -f $KERNEL ]] || KERNEL="$KDIR/boot/vmlinuz-$ABI"

# --- initramfs --------------------------------------------------------------
# Modules in load order: 9p needs netfs and the transports; gpio-sim needs configfs.
MODULES=(fs/netfs/netfs net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p fs/configfs/configfs drivers/gpio/gpio-sim)
INITRD="$CACHE/initramfs-$ABI.cpio.gz"
INIT_SRC="$ROOT/test/setup/gpio-vm-init.sh"
if [[ ! -f $INITRD || $INIT_SRC -nt $INITRD || $0 -nt $INITRD ]]; then
  ir="$(mktemp -d)"
  mkdir -p "$ir"/{bin,sbin,dev,proc,sys,host,out,lib/modules,etc,tmp}
  cp "$BUSYBOX" "$ir/bin/busybox"
  for m in "${MODULES[@]}"; do
    f="$(ls "$MODDIR/kernel/$m.ko"* 2>/dev/null | head -n1 || true)"
    if [[ -z $f ]]; then
      # Built in, not a module: nothing to load.
      continue
    fi
    case $f in
      *.xz) xz -dc "$f" >"$ir/lib/modules/$(basename "$m").ko" ;;
      *.zst) zstd -dcq "$f" >"$ir/lib/modules/$(basename "$m").ko" ;;
      *) cp "$f" "$ir/lib/modules/$(basename "$m").ko" ;;
    esac
    echo "$(basename "$m")" >>"$ir/lib/modules/order"
  done
  cp "$INIT_SRC" "$ir/init"
  chmod +x "$ir/init"
  (cd "$ir" && find . | cpio -o -H newc --quiet | gzip -1 >"$INITRD.tmp") && mv "$INITRD.tmp" "$INITRD"
  rm -rf "$ir"
fi

# --- run ----------------------------------------------------------------------
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
chmod 0777 "$OUT"
: >"$OUT/log"
if [[ $MODE == test ]]; then
  files=()
  for f in "$ROOT"/dist/test/gpio/*.test.js; do files+=("${f#"$ROOT"/}"); done
  CMD="node --test --test-concurrency=1 --test-reporter=spec ${files[*]}"
else
  CMD="node dist/bench/gpio.js"
fi
printf '%s\n' "$CMD" >"$OUT/cmd"
printf '%s\n' "$ROOT" >"$OUT/cwd"

# Stream the guest's log as it grows.
tail -n +1 -f "$OUT/log" --pid=$$ 2>/dev/null &
TAIL=$!
start=$(date +%s)
set +e
timeout --kill-after=10 "$VM_TIMEOUT_S" qemu-system-x86_64 \
  -machine q35,accel=tcg -cpu max -smp 1 -m "$VM_MEM_MB" \
  -kernel "$KERNEL" -initrd "$INITRD" \
  -append "console=ttyS0 quiet loglevel=3 panic=-1 oops=panic" \
  -nographic -monitor none -serial file:"$OUT/console" -no-reboot \
  -fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap \
  -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
  -fsdev local,id=repo,path="$ROOT",security_model=none,readonly=on,multidevs=remap \
  -device virtio-9p-pci,fsdev=repo,mount_tag=repo \
  -fsdev local,id=out,path="$OUT",security_model=none,multidevs=remap \
  -device virtio-9p-pci,fsdev=out,mount_tag=out \
  </dev/null >"$OUT/qemu" 2>&1
qrc=$?
set -e
sleep 0.3
kill "$TAIL" 2>/dev/null || true
wait "$TAIL" 2>/dev/null || true
secs=$(($(date +%s) - start))
if [[ ! -f $OUT/rc ]]; then
  echo "gpio-vm: the VM ended without an exit code (qemu exit $qrc after ${secs}s); console:" >&2
  tail -n 40 "$OUT/console" >&2 || true
  tail -n 5 "$OUT/qemu" >&2 || true
  exit 1
fi
rc="$(cat "$OUT/rc")"
echo "gpio-vm: kernel $ABI, $MODE exited $rc after ${secs}s in the VM"
exit "$rc"

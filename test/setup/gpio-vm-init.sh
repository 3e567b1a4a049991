#!/bin/busybox sh
# /init of the GPIO tier's VM (test/setup/gpio-vm.sh builds the initramfs).
# Loads the modules, creates the simulated chip, enters the host root
# (read-only 9p) and runs the command the host left in the out share.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() {
  echo "gpio-vm init: $*" >/dev/ttyS0
  echo "$*" >>/out/log 2>/dev/null
  echo 1 >/out/rc 2>/dev/null
  poweroff -f
}

while read -r m; do
  insmod "/lib/modules/$m.ko" || fail "insmod $m failed"
done </lib/modules/order
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out /out || fail "cannot mount the out share"
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 hostroot /host || fail "cannot mount the host root"
mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config || fail "cannot mount configfs"

# The simulated chip: one bank of 8 named lines; line 7 is hogged by the
# kernel (a line held elsewhere, with a consumer name).
G=/sys/kernel/config/gpio-sim/pinhole
mkdir "$G" "$G/gpio-bank0" || fail "gpio-sim configfs missing"
echo 8 >"$G/gpio-bank0/num_lines"
echo pinhole-sim >"$G/gpio-bank0/label"
for i in 0 1 2 3 4 5 6 7; do
  mkdir "$G/gpio-bank0/line$i"
  echo "GPIO$((i + 17))" >"$G/gpio-bank0/line$i/name"
done
mkdir "$G/gpio-bank0/line7/hog"
echo kernel-hog >"$G/gpio-bank0/line7/hog/name"
echo output-high >"$G/gpio-bank0/line7/hog/direction"
echo 1 >"$G/live" || fail "gpio-sim did not go live"

ip link set lo up || fail "cannot bring lo up"

# Node runs in the host root: writable /tmp, the guest's /dev, /proc, /sys.
H=/host
mount -t tmpfs -o mode=1777 tmpfs $H/tmp
mount --bind /dev $H/dev
mount --bind /proc $H/proc
mount --bind /sys $H/sys
mount -t configfs none $H/sys/kernel/config
mkdir -p $H/tmp/out && mount --bind /out $H/tmp/out
# The checkout has a share of its own: it may sit under /tmp (a CI clone), which the tmpfs above hides.
CWD="$(cat /out/cwd)"
mkdir -p "$H$CWD" && mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 repo "$H$CWD" || fail "cannot mount the checkout"
# A user without GPIO access, and the gpio group, for the permission tests.
cp $H/etc/passwd /tmp/passwd && echo 'pinhole-nogpio:x:4242:4242::/tmp:/bin/sh' >>/tmp/passwd
cp $H/etc/group /tmp/group && printf 'pinhole-nogpio:x:4242:\ngpio:x:4243:\n' >>/tmp/group
mount --bind /tmp/passwd $H/etc/passwd
mount --bind /tmp/group $H/etc/group

CMD="$(cat /out/cmd)"
chroot $H /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/tmp TMPDIR=/tmp \
  PINHOLE_GPIO_VM=1 PINHOLE_GPIO_VM_CHIP=pinhole-sim PINHOLE_GPIO_VM_NOGPIO_UID=4242 PINHOLE_GPIO_VM_GPIO_GID=4243 \
  PINHOLE_GPIO_VM_SIMDEV="$G" \
  /bin/sh -c "cd '$CWD' && $CMD" >>/out/log 2>&1 </dev/null
echo $? >/out/rc
sync
poweroff -f

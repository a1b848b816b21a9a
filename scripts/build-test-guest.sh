#!/usr/bin/env bash
# Build the tiny test guest from Debian packages only: scripts/build-test-guest.sh [OUTDIR]
# (default .cache/test-guest). Prints the paths of what it built; re-running with nothing
# changed does nothing.
#
# Format: a kernel, an initramfs and an empty root disk; it prints their three paths in this order.
#   vmlinuz     the Debian kernel (linux-image-amd64), copied from /boot
#   initrd.img  a gzip'd newc cpio: busybox-static, the virtio modules that kernel needs for
#               a virtio NIC and disk (picked through modules.dep), and /init
#   root.qcow2  an empty qcow2 disk (64 MiB virtual, a few hundred KiB on disk); the guest
#               only puts its marker on it (below), so a server booted from a volume made of
#               it shows that volume as its root disk
# Boot it with a kernel command line: `console=ttyS0 fabric.hostname=NAME` (qemu -kernel
# -initrd -append). Why this format: it is built in seconds from apt packages with no
# network downloads, no root filesystem, partition table, bootloader or loop devices; it is a
# few MB; and the guest's identity comes from the command line, so one build serves every
# instance. The guest runs entirely from RAM and keeps nothing across reboots but the marker
# it leaves on its disks.
#
# Why an empty disk: in the Image API the test guest is registered the way Glance models
# direct kernel boot. The image a server boots is the root disk `test-guest` (qcow2: this
# empty disk), whose properties `kernel_id` and `ramdisk_id` name two more images (vmlinuz as
# disk_format aki, initrd.img as ari) and whose `os_command_line` is `console=ttyS0`. A virt
# driver boots the kernel and initramfs, gives the guest a copy-on-write overlay of the root
# disk as /dev/vda, and appends `fabric.hostname=<server name>` to the command line.
#
# What /init does, on the serial console (console=ttyS0):
#   mounts proc, sys and devtmpfs; loads the virtio modules in dependency order; sets the
#   hostname from fabric.hostname= (default fabric-guest) and prints
#   `FABRIC-GUEST-BOOTED hostname=NAME`; brings up lo and eth0 (udhcpc: address, default route,
#   /etc/resolv.conf); serves `<h1>hello from NAME</h1>` with busybox httpd on port 80; and once
#   DHCP gave a lease prints `FABRIC-GUEST-READY hostname=NAME ip=ADDR`. Then it idles for ever
#   (PID 1 never exits, so no kernel panic).
#   `GET /cgi-bin/probe?ADDR[:PORT]` makes the guest itself fetch http://ADDR[:PORT]/ (3 s
#   timeout) and answer `PROBE-OK <that page>` or `PROBE-FAILED ADDR: <why>`: how tests see what one
#   guest can reach, from outside, without a shell in the guest.
#   Disks: /sys/block is polled every 0.2 s (busybox has no udev; devtmpfs makes /dev/vdX),
#   so a disk present at boot (the root disk too) and one hot-plugged later are handled alike.
#   For each disk that appears it prints `DISK <name> serial=<serial>` (the serial as the guest
#   reads it from /sys/block/<name>/serial: a volume's id, cut to 20 characters by virtio), then
#   reads the disk's first sector: when it starts with a marker `written-by <host>` it prints
#   `DISK <name> found written-by <host>`; otherwise it writes `written-by <its hostname>` there,
#   flushes it to the disk and prints `DISK <name> wrote written-by <its hostname>` (or
#   `DISK <name> write-failed`; a disk it cannot read: `DISK <name> read-failed`, and it writes
#   nothing there). A disk that goes away prints `DISK <name> removed`. That is
#   how tests see from outside that a volume's data moved from one guest to another. The
#   empty root.qcow2 has no marker, so every guest marks its own copy of it.
#
# The build is cached in OUTDIR/.stamp: a hash of this script, the kernel version and the
# kernel and busybox files it used. Runs as root (apt-get; /boot/vmlinuz-* is root-only).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/scripts/$(basename "${BASH_SOURCE[0]}")"
OUT="${1:-$ROOT/.cache/test-guest}"
log() { printf '[test-guest] %s\n' "$*" >&2; }

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        if [[ $(id -u) -ne 0 ]]; then log "missing ${missing[*]}: run as root to install them"; exit 1; fi
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# The kernel linux-image-amd64 points at, else the newest one in /boot that has its modules.
kernel_version() {
    local version
    version=$(dpkg-query -W -f='${Depends}' linux-image-amd64 2>/dev/null | grep -o 'linux-image-[^ ,]*' | head -1)
    version=${version#linux-image-}
    if [[ -n $version && -f /boot/vmlinuz-$version && -d /lib/modules/$version ]]; then
        echo "$version"; return
    fi
    for vmlinuz in $(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V -r); do
        version=${vmlinuz#/boot/vmlinuz-}
        if [[ -d /lib/modules/$version ]]; then echo "$version"; return; fi
    done
    log "no kernel with modules in /boot and /lib/modules"; exit 1
}

apt_install linux-image-amd64 busybox-static cpio qemu-system-x86 qemu-utils
BUSYBOX=/bin/busybox
KVER=$(kernel_version)
VMLINUZ=/boot/vmlinuz-$KVER
MODDIR=/lib/modules/$KVER
STAMP="$OUT/.stamp"
digest=$( { sha256sum "$SELF"; echo "$KVER"; stat -L -c '%n %s %Y' "$VMLINUZ" "$MODDIR/modules.dep" "$BUSYBOX"; } \
    | sha256sum | cut -d' ' -f1)
if [[ -f $OUT/vmlinuz && -f $OUT/initrd.img && -f $OUT/root.qcow2 && "$(cat "$STAMP" 2>/dev/null)" == "$digest" ]]; then
    log "up to date (kernel $KVER)"
    printf '%s\n' "$OUT/vmlinuz" "$OUT/initrd.img" "$OUT/root.qcow2"
    exit 0
fi

log "building for kernel $KVER into $OUT"
mkdir -p "$OUT"
WORK=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
TREE="$WORK/tree"
mkdir -p "$TREE"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,etc,www/cgi-bin,lib/modules,usr/share/udhcpc}

# busybox and a link for each applet, where busybox itself would put it.
cp "$BUSYBOX" "$TREE/bin/busybox"
for applet in $("$BUSYBOX" --list-full); do
    [[ $applet == bin/busybox ]] && continue
    mkdir -p "$TREE/$(dirname "$applet")"
    ln -sf /bin/busybox "$TREE/$applet"
done
for needed in sh mount insmod hostname ip ifconfig route udhcpc httpd nc tr sed sleep cat dd head sync; do
    [[ -e $TREE/bin/$needed || -e $TREE/sbin/$needed || -e $TREE/usr/bin/$needed || -e $TREE/usr/sbin/$needed ]] \
        || { log "this busybox has no $needed applet"; exit 1; }
done

# Modules: each wanted one that is not built in, after the modules it depends on. modules.dep
# lists a module's whole dependency closure, the last one to load first (as modprobe reads it).
module_line() { grep -E "(^|/)$1\.ko(\.(xz|zst|gz))?:" "$MODDIR/modules.dep" || true; }
builtin() { grep -qE "(^|/)$1\.ko$" "$MODDIR/modules.builtin" 2>/dev/null; }
load_order=()
want_module() {  # name required|optional
    local line path deps i
    line=$(module_line "$1")
    if [[ -z $line ]]; then
        builtin "$1" && return 0
        [[ $2 == optional ]] && return 0
        log "kernel $KVER has no module $1"; exit 1
    fi
    path=${line%%:*}
    read -r -a deps <<<"${line#*:}"
    for ((i = ${#deps[@]} - 1; i >= 0; i--)); do load_order+=("${deps[i]}"); done
    load_order+=("$path")
}
want_module virtio_pci required
want_module virtio_net required
want_module virtio_blk required
want_module af_packet optional  # udhcpc's raw socket, when CONFIG_PACKET=m
: >"$TREE/etc/modules.load"
declare -A seen=()
for path in "${load_order[@]}"; do
    [[ -n ${seen[$path]:-} ]] && continue
    seen[$path]=1
    name=${path##*/}
    ko=${name%%.ko*}.ko
    case $name in  # stored uncompressed: no need for busybox insmod to read xz or zstd
        *.ko.xz) command -v xz >/dev/null || apt_install xz-utils; xz -dc "$MODDIR/$path" >"$TREE/lib/modules/$ko" ;;
        *.ko.zst) command -v zstd >/dev/null || apt_install zstd; zstd -qdc "$MODDIR/$path" >"$TREE/lib/modules/$ko" ;;
        *.ko.gz) gzip -dc "$MODDIR/$path" >"$TREE/lib/modules/$ko" ;;
        *.ko) cp "$MODDIR/$path" "$TREE/lib/modules/$ko" ;;
        *) log "unexpected module file $path"; exit 1 ;;
    esac
    echo "$ko" >>"$TREE/etc/modules.load"
done
log "modules: $(tr '\n' ' ' <"$TREE/etc/modules.load")"

cat >"$TREE/usr/share/udhcpc/default.script" <<'EOF'
#!/bin/sh
# udhcpc hook: $1 is the event, the lease is in $interface $ip $subnet $router $dns $domain.
case "$1" in
deconfig)
    ifconfig "$interface" 0.0.0.0 up
    ;;
bound | renew)
    ifconfig "$interface" "$ip" ${subnet:+netmask "$subnet"} ${broadcast:+broadcast "$broadcast"} up
    if [ -n "$router" ]; then
        while route del default dev "$interface" 2>/dev/null; do :; done
        for gw in $router; do route add default gw "$gw" dev "$interface"; done
    fi
    : >/etc/resolv.conf
    [ -n "$domain" ] && echo "search $domain" >>/etc/resolv.conf
    for ns in $dns; do echo "nameserver $ns" >>/etc/resolv.conf; done
    echo "$ip" >/run/lease
    ;;
esac
exit 0
EOF

cat >"$TREE/init" <<'EOF'
#!/bin/sh
# PID 1 of the fabric test guest (scripts/build-test-guest.sh). It must never exit.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
echo 4 >/proc/sys/kernel/printk  # kernel errors only from here on, so our lines stay whole

while read -r ko; do
    insmod "/lib/modules/$ko" || echo "fabric-guest: insmod $ko failed"
done </etc/modules.load

name=fabric-guest
for arg in $(cat /proc/cmdline); do
    case "$arg" in fabric.hostname=*) name=${arg#fabric.hostname=} ;; esac
done
name=$(echo "$name" | tr -cd 'A-Za-z0-9.-' | cut -c1-63)
[ -n "$name" ] || name=fabric-guest
hostname "$name"
echo "$name" >/etc/hostname
printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$name" >/etc/hosts
echo "FABRIC-GUEST-BOOTED hostname=$name"

# One disk that appeared: say which it is, then find or leave this guest's marker on it.
disk_appeared() {
    serial=
    [ -r "/sys/block/$1/serial" ] && read -r serial <"/sys/block/$1/serial"
    echo "DISK $1 serial=$serial"
    # A disk that cannot be read is left alone: a marker there must never be overwritten.
    if ! dd if="/dev/$1" of="/tmp/head.$1" bs=512 count=1 2>/dev/null; then
        echo "DISK $1 read-failed"
        return
    fi
    marker=$(tr -d '\000' <"/tmp/head.$1" | head -n 1 | tr -cd 'A-Za-z0-9 .-')
    case "$marker" in
    "written-by "?*) echo "DISK $1 found $marker" ;;
    *)
        if printf 'written-by %s\n' "$name" | dd of="/dev/$1" conv=notrunc,fsync 2>/dev/null && sync; then
            echo "DISK $1 wrote written-by $name"
        else
            echo "DISK $1 write-failed"
        fi
        ;;
    esac
}

# Polls /sys/block, which is cheap (one sleep a round; the rest are shell builtins), and sees
# disks present at boot and hot-plugged ones the same way. $seen and $now are " vda vdb ".
watch_disks() {
    seen=" "
    while :; do
        now=" "
        for path in /sys/block/*; do
            disk=${path##*/}
            case "$disk" in "*" | loop* | ram* | zram* | dm-* | md* | sr* | fd* | nbd*) continue ;; esac
            case "$seen" in *" $disk "*) now="$now$disk " && continue ;; esac
            [ -b "/dev/$disk" ] || continue  # devtmpfs makes the node just after the sysfs entry
            now="$now$disk "
            disk_appeared "$disk"
        done
        for disk in $seen; do
            case "$now" in *" $disk "*) ;; *) echo "DISK $disk removed" ;; esac
        done
        seen=$now
        sleep 0.2
    done
}
watch_disks &

ip link set lo up
ip link set eth0 up || echo "fabric-guest: no eth0"
# Foreground until the first lease (or 10 tries), then udhcpc carries on in the background.
udhcpc -i eth0 -s /usr/share/udhcpc/default.script -b -t 10 -T 2 -x "hostname:$name"

printf '<!doctype html>\n<title>%s</title>\n<h1>hello from %s</h1>\n' "$name" "$name" >/www/index.html
httpd -p 80 -h /www || echo "fabric-guest: httpd failed"

waited=0
while [ ! -s /run/lease ]; do
    sleep 1
    waited=$((waited + 1))
    [ $((waited % 30)) -eq 0 ] && echo "fabric-guest: still no DHCP lease after ${waited}s"
done
echo "FABRIC-GUEST-READY hostname=$name ip=$(cat /run/lease)"

while :; do sleep 3600; done
EOF
cat >"$TREE/www/cgi-bin/probe" <<'EOF'
#!/bin/sh
# GET /cgi-bin/probe?ADDR[:PORT]: what this guest gets from http://ADDR[:PORT]/ (busybox httpd CGI).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin  # httpd gives a CGI no PATH
target=$(echo "$QUERY_STRING" | tr -cd '0-9.:')
printf 'Content-Type: text/plain\r\n\r\n'
host=${target%%:*}
port=80
case "$target" in *:*) port=${target##*:} ;; esac
# nc, not wget: Debian's static busybox wget crashes in a guest with no glibc NSS libraries.
if reply=$(printf 'GET / HTTP/1.0\r\nHost: %s\r\n\r\n' "$target" | nc -w 3 "$host" "$port" 2>/tmp/probe.err) && [ -n "$reply" ]; then
    echo "PROBE-OK $(echo "$reply" | sed '1,/^\r*$/d')"
else
    echo "PROBE-FAILED $target: $(cat /tmp/probe.err)"
fi
EOF
chmod 755 "$TREE/init" "$TREE/usr/share/udhcpc/default.script" "$TREE/www/cgi-bin/probe"

(cd "$TREE" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9n >"$WORK/initrd.img"
cp "$VMLINUZ" "$WORK/vmlinuz"
qemu-img create -q -f qcow2 "$WORK/root.qcow2" 64M
chmod 644 "$WORK/vmlinuz" "$WORK/initrd.img" "$WORK/root.qcow2"
mv -f "$WORK/vmlinuz" "$WORK/initrd.img" "$WORK/root.qcow2" "$OUT/"
echo "$KVER" >"$OUT/kernel-version"
echo "$digest" >"$STAMP"
log "built: vmlinuz $(du -h "$OUT/vmlinuz" | cut -f1), initrd.img $(du -h "$OUT/initrd.img" | cut -f1)," \
    "root.qcow2 $(du -h "$OUT/root.qcow2" | cut -f1)"
printf '%s\n' "$OUT/vmlinuz" "$OUT/initrd.img" "$OUT/root.qcow2"

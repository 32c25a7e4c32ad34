#!/bin/bash
# Run a command where /dev/kvm works, on a host that has none (a VM without nested
# virtualization, say): inside a QEMU virtual machine whose CPU is emulated in software
# (TCG, "-cpu max", which includes AMD SVM), booting Debian's kernel with the kvm-amd module.
# That machine sees this host's root file system over 9p, read-write, with fresh tmpfs on
# /tmp, /var/tmp, /run and /dev/shm; the command runs there as root, in the current folder.
# Its network is QEMU's user network: it reaches this host's own addresses (not 127.0.0.1),
# so the RADOS tests can use a cluster running here (tools/ceph_test_cluster.c says how).
#
# usage: tools/kvm_emulated.sh [-c] [-n] [-t SECONDS] [-m MEMORY] COMMAND [ARG...]
#   -c  first start the tests' Ceph cluster on this host (build/ceph_test_cluster, at this
#       host's first address that is not loopback) and give the command
#       VMM_TEST_CEPH_CONF naming it: a cluster's daemons do not start in time on the
#       emulated CPU (tests/ceph_cluster.h). It is stopped when the machine ends.
#   -n  boot the newer kernel of bookworm-backports (6.12, fetched from deb.debian.org)
#       instead of bookworm's 6.1: what needs Linux 6.4 or later (userfaultfd's
#       UFFDIO_CONTINUE_MODE_WP, which host-wide sharing of restored pages needs) works there
#   -t  give up after this long (default 3600): the machine is stopped, status 124
#   -m  the machine's memory (default 8G)
# The command's output comes back on standard output (its standard error folded in), its
# exit status is ours; 125: the machine could not be made or did not start.
#
# Everything in it runs many times slower than on a host's own KVM, and its exits take
# another emulator's path: it shows whether the KVM code works, never how fast it is.
# One host thread runs both of its CPUs (thread=single): with one thread per CPU, QEMU 7.2's
# machine stalled for good a few times here in the middle of the sanitizer suites.
# The kernel and busybox come from Debian's archive (apt-get download), kept in
# build/kvm_emulated/ with the initramfs made from them.
set -eu

usage="usage: tools/kvm_emulated.sh [-c] [-n] [-t SECONDS] [-m MEMORY] COMMAND [ARG...]"
timeout_s=3600
memory=8G
ceph=
newer=
while getopts cnt:m: opt; do
	case $opt in
	c) ceph=1 ;;
	n) newer=1 ;;
	t) timeout_s=$OPTARG ;;
	m) memory=$OPTARG ;;
	*) echo "$usage" >&2; exit 125 ;;
	esac
done
shift $((OPTIND - 1))
if [ $# -eq 0 ]; then
	echo "$usage" >&2
	exit 125
fi

top=$(cd "$(dirname "$0")/.." && pwd)
dir=$top/build/kvm_emulated
kdir=$dir/kernel-stable
[ -z "$newer" ] || kdir=$dir/kernel-backports
mkdir -p "$kdir"
fail() { echo "kvm_emulated: $*" >&2; exit 125; }
command -v qemu-system-x86_64 >/dev/null || fail "qemu-system-x86_64 is not installed (tools/deps.sh test)"

# The kernel (the package linux-image-amd64 depends on, or with -n bookworm-backports'
# newest linux-image-*-amd64-unsigned) and a static busybox, unpacked once into $kdir
# (again when what goes into the initramfs changes: its key below).
initrd_key="2: kvm, 9p, virtio-net"
if [ ! -f "$kdir/initrd.gz" ] || [ "$(cat "$kdir/initrd.key" 2>/dev/null)" != "$initrd_key" ]; then
	rm -rf "$kdir/pkg" "$kdir/root"
	mkdir -p "$kdir/pkg"
	(cd "$kdir/pkg" && apt-get download busybox-static >/dev/null 2>&1) || fail "apt-get download busybox-static failed"
	if [ -n "$newer" ]; then
		mirror=http://deb.debian.org/debian
		kpath=$(curl -sf "$mirror/dists/bookworm-backports/main/binary-amd64/Packages.xz" | xz -dc |
			awk '/^Package: linux-image-[0-9.]+\+deb12-amd64-unsigned$/ {p = 1} p && /^Filename:/ {f = $2; p = 0} END {print f}')
		[ -n "$kpath" ] || fail "-n: no kernel found in $mirror's bookworm-backports"
		kpkg=${kpath##*/}
		curl -sfo "$kdir/pkg/$kpkg" "$mirror/$kpath" || fail "-n: cannot fetch $mirror/$kpath"
	else
		kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
		[ -n "$kpkg" ] || fail "apt-cache knows no linux-image-amd64 (apt-get update?)"
		(cd "$kdir/pkg" && apt-get download "$kpkg" >/dev/null 2>&1) || fail "apt-get download $kpkg failed"
	fi
	for deb in "$kdir"/pkg/*.deb; do dpkg-deb -x "$deb" "$kdir/pkg/x"; done
	kver=$(ls "$kdir/pkg/x/lib/modules")
	cp "$kdir/pkg/x/boot/vmlinuz-$kver" "$kdir/vmlinuz"
	mkdir -p "$kdir/root/bin" "$kdir/root/mods" "$kdir/root/proc" "$kdir/root/sys" "$kdir/root/dev" "$kdir/root/host"
	cp "$kdir/pkg/x/bin/busybox" "$kdir/root/bin/"
	# In load order: each after what it depends on. Newer kernels build some in (virtio) or
	# merged them (fscache into netfs) and compress modules (busybox's insmod does not).
	all_mods="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci irqbypass kvm ccp kvm-amd netfs fscache 9pnet 9pnet_virtio 9p failover net_failover virtio_net"
	mods=
	for m in $all_mods; do
		f=$(find "$kdir/pkg/x/lib/modules/$kver" -name "$m.ko" -o -name "$m.ko.xz" | head -1)
		if [ -z "$f" ]; then
			grep -q "/$m.ko\$" "$kdir/pkg/x/lib/modules/$kver/modules.builtin" 2>/dev/null ||
				[ "$m" = fscache ] || fail "$kpkg has no module $m"
			continue
		fi
		case $f in
		*.xz) xz -dc "$f" >"$kdir/root/mods/$m.ko" ;;
		*) cp "$f" "$kdir/root/mods/$m.ko" ;;
		esac
		mods="$mods $m"
	done
	cat >"$kdir/root/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $mods; do insmod /mods/\$m.ko || echo "KVM_EMULATED: insmod \$m failed"; done
# QEMU's user network: this host's own addresses (not its loopback) are reachable, as for
# a Ceph cluster started here for the tests (tests/ceph_cluster.h, VMM_TEST_CEPH_CONF).
ip link set lo up
ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up && ip route add default via 10.0.2.2 || echo "KVM_EMULATED: no network"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=loose host /host || echo "KVM_EMULATED: no 9p"
for d in proc sys dev; do mount --bind /\$d /host/\$d; done
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts -o ptmxmode=666,gid=5,mode=620 devpts /host/dev/pts
for d in tmp var/tmp run dev/shm; do mount -t tmpfs -o mode=1777 tmpfs /host/\$d; done
job=\$(sed -n 's/.*kvm_emulated_job=\([^ ]*\).*/\1/p' /proc/cmdline)
echo "KVM_EMULATED_BEGIN"
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb chroot /host /bin/bash "\$job" 2>&1
echo "KVM_EMULATED_STATUS=\$?"
poweroff -f
EOF
	chmod +x "$kdir/root/init"
	(cd "$kdir/root" && find . | ./bin/busybox cpio -o -H newc 2>/dev/null | gzip -1) >"$kdir/initrd.gz.new"
	mv "$kdir/initrd.gz.new" "$kdir/initrd.gz"
	echo "$initrd_key" >"$kdir/initrd.key"
	rm -rf "$kdir/pkg"
fi

# The job: this folder, then the command, each word quoted as given.
job=$(mktemp "$dir/job.XXXXXX")
ceph_pid=
ceph_conf=
end() {
	rm -f "$job"
	if [ -n "$ceph_pid" ]; then
		kill "$ceph_pid" 2>/dev/null
		wait "$ceph_pid" 2>/dev/null
	fi
	rm -f "$ceph_conf" "$ceph_conf.out"
}
trap end EXIT

if [ -n "$ceph" ]; then
	[ -x "$top/build/ceph_test_cluster" ] || fail "-c: build/ceph_test_cluster is not built (make build/ceph_test_cluster)"
	addr=$(ip -4 -o addr show scope global 2>/dev/null | awk '{sub("/.*", "", $4); print $4; exit}')
	[ -n "$addr" ] || fail "-c: this host has no IPv4 address but loopback, which the machine cannot reach"
	ceph_conf="$dir/ceph-$$.conf"
	VMM_TEST_CEPH_ADDR=$addr "$top/build/ceph_test_cluster" "$ceph_conf" >"$ceph_conf.out" 2>&1 &
	ceph_pid=$!
	for _ in $(seq 900); do
		grep -q '^ready ' "$ceph_conf.out" && break
		kill -0 "$ceph_pid" 2>/dev/null || { cat "$ceph_conf.out" >&2; ceph_pid=; fail "-c: the Ceph cluster did not start"; }
		sleep 0.1
	done
	grep -q '^ready ' "$ceph_conf.out" || { cat "$ceph_conf.out" >&2; fail "-c: the Ceph cluster did not start within 90 s"; }
	set -- env VMM_TEST_CEPH_CONF="$ceph_conf" "$@"
fi

{
	printf 'cd %q || exit 125\n' "$PWD"
	printf 'exec'
	printf ' %q' "$@"
	printf '\n'
} >"$job"

status=125
while IFS= read -r line; do
	case $line in
	*KVM_EMULATED_BEGIN*) started=1 ;;
	*KVM_EMULATED_STATUS=*) status=${line##*KVM_EMULATED_STATUS=}; status=${status%%[!0-9]*}; started= ;;
	KVM_EMULATED_QEMU=*) qemu=${line#KVM_EMULATED_QEMU=} ;;
	*) [ -n "${started:-}" ] && printf '%s\n' "${line%$'\r'}" ;;
	esac
done < <(timeout "$timeout_s" qemu-system-x86_64 -accel tcg,thread=single -cpu max -smp 2 -m "$memory" \
	-nographic -no-reboot -kernel "$kdir/vmlinuz" -initrd "$kdir/initrd.gz" \
	-append "console=ttyS0 quiet panic=-1 kvm_emulated_job=$job" -nic user,model=virtio-net-pci \
	-virtfs "local,path=/,mount_tag=host,security_model=passthrough,id=host,multidevs=remap" </dev/null 2>&1;
	echo "KVM_EMULATED_QEMU=$?")
if [ "${qemu:-}" = 124 ]; then
	echo "kvm_emulated: gave up after $timeout_s s" >&2
	exit 124
fi
[ "$status" != 125 ] || [ -n "${started:-}" ] || fail "the machine did not start (qemu status ${qemu:-?})"
exit "$status"

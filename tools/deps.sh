#!/bin/sh
# Install the Debian packages a make target needs, only those missing.
# usage: tools/deps.sh build|test|fuzz|bench
# Exit status 0 when everything is present afterwards; otherwise one line saying what is missing.
set -eu

case "${1:-build}" in
build) pkgs="gcc make libc6-dev pkg-config check libxxhash-dev libjansson-dev libexpat1-dev librados-dev" ;;  # static libc, jansson, xxhash and expat: build/vmm is static-pie; librados: the RADOS helper (build/rados_server, dynamic)
test)  pkgs="qemu-system-x86 socat clang libclang-rt-14-dev libvirt-clients libxml2-utils ceph-mon ceph-osd tmux" ;;  # QEMU boots the same guest.elf; socat drives the monitor socket; tmux runs the CLI in a pane whose screen the terminal suite reads; clang: the brief fuzzing; virt-xml-validate (its schemas come with libvirt0, its xmllint with libxml2-utils) checks vmm dumpxml's XML; ceph-mon and ceph-osd (with ceph-base and ceph-common: monmaptool, ceph-authtool, ceph) make the rados suite's test cluster
fuzz)  pkgs="clang libclang-rt-14-dev" ;;
bench) pkgs="qemu-system-x86 time" ;;
*) echo "deps.sh: unknown package set '$1' (build, test, fuzz, bench)" >&2; exit 2 ;;
esac

missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
		echo "deps.sh: missing packages:$missing; run as root: apt-get install$missing" >&2
		exit 1
	fi
fi
echo "deps.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null

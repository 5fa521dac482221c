#!/usr/bin/env bash
# build-fio.sh PREFIX -- build fio with its libiscsi ioengine into PREFIX.
#
# Debian's binary fio is built without --enable-libiscsi, so it has no
# "libiscsi" engine. This builds the distribution's own fio source package
# (Debian's patches applied by dpkg-source) with a plain configure/make: the
# package's full Build-Depends (gtk, glusterfs, rbd, ...) are not needed for
# the iSCSI engine. Needs root on Debian (apt-get); about a minute on 2 cores.
#
# Called by reservoir-bench when no fio with libiscsi is found; safe to run by
# hand. Skips everything when PREFIX/bin/fio already has the engine.
set -euo pipefail

prefix=${1:?usage: build-fio.sh PREFIX}
fio="$prefix/bin/fio"
if [[ -x $fio ]] && "$fio" --enghelp 2>/dev/null | grep -qw libiscsi; then
    echo "fio with libiscsi already at $fio"
    exit 0
fi
if [[ $EUID -ne 0 ]]; then
    echo "building fio needs apt-get: run as root, or build fio with --enable-libiscsi yourself and pass --fio PATH" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Source packages need a deb-src entry; stock Debian images ship deb only.
# Add one for the running release in a file of our own, never editing theirs.
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}")
src_list=/etc/apt/sources.list.d/reservoir-bench-src.sources
if ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    cat >"$src_list" <<SOURCES
# added by reservoir bench/scripts/build-fio.sh to fetch fio's source package
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename $codename-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
fi
apt-get update -q
# Only what the libiscsi-enabled command-line build needs.
apt-get install -y -q --no-install-recommends \
    build-essential dpkg-dev pkg-config libiscsi-dev libaio-dev zlib1g-dev

work=$(mktemp -d /var/tmp/reservoir-fio-build.XXXXXX)
chmod 755 "$work"   # apt-get source downloads as user _apt
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get source -q fio
src=$(find . -maxdepth 1 -type d -name 'fio-*' | head -n1)
[[ -n $src ]] || { echo "apt-get source fio produced no fio-* directory" >&2; exit 1; }
cd "$src"
./configure --disable-native --prefix="$prefix" --enable-libiscsi >configure.out
grep -Eq '^iscsi engine +yes' configure.out || {
    cat configure.out >&2
    echo "fio's configure did not enable the libiscsi engine (libiscsi-dev missing?)" >&2
    exit 1
}
make -j"$(nproc)" >make.log 2>&1 || { tail -n 40 make.log >&2; exit 1; }
make install >install.log 2>&1 || { tail -n 20 install.log >&2; exit 1; }
"$fio" --enghelp | grep -qw libiscsi || { echo "$fio has no libiscsi engine" >&2; exit 1; }
echo "built $("$fio" --version) with libiscsi at $fio"

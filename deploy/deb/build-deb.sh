#!/usr/bin/env bash
# build-deb.sh - build the Debian package of Tandem (tandemd, tandemctl, tandem-bench, the
# systemd unit, the example configuration as a conffile, man pages generated from the CLIs).
#
#   bash deploy/deb/build-deb.sh [--out DIR] [--no-build]
#
# Writes DIR/tandem_VERSION-1_ARCH.deb (DIR defaults to target/deb) and prints its path on the
# last line. --no-build packages the binaries already in target/release (cargo build --release
# --locked otherwise). Needs dpkg-dev (dpkg-deb, dpkg-shlibdeps); root is not needed (file
# ownership is set by dpkg-deb --root-owner-group).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUT=$ROOT/target/deb
BUILD=1
while (( $# )); do
    case $1 in
        --out) OUT=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "build-deb.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
for tool in dpkg-deb dpkg-shlibdeps dpkg-architecture; do
    command -v "$tool" >/dev/null || { echo "build-deb.sh: $tool is missing (apt-get install dpkg-dev)" >&2; exit 1; }
done
export PATH="$HOME/.cargo/bin:$PATH"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if (( BUILD )); then
    cargo build --release --locked --bin tandemd --bin tandemctl --bin tandem-bench
fi
BIN=$TARGET/release
for b in tandemd tandemctl tandem-bench; do
    [[ -x $BIN/$b ]] || { echo "build-deb.sh: $BIN/$b is missing (run without --no-build)" >&2; exit 1; }
done

VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
[[ -n $VERSION ]] || { echo "build-deb.sh: no version in Cargo.toml [workspace.package]" >&2; exit 1; }
ARCH=$(dpkg-architecture -qDEB_HOST_ARCH)
PKG=tandem
DEBVER=$VERSION-1

STAGE=$(mktemp -d /tmp/tandem-deb.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
R=$STAGE/root
install -d "$R/DEBIAN" "$R/usr/sbin" "$R/usr/bin" "$R/lib/systemd/system" "$R/etc/tandem" \
    "$R/usr/share/man/man1" "$R/usr/share/man/man8" "$R/usr/share/doc/$PKG/examples"

# Binaries, without their debug information (the release profile keeps it for profiling).
install -m 0755 "$BIN/tandemd" "$R/usr/sbin/tandemd"
install -m 0755 "$BIN/tandemctl" "$R/usr/bin/tandemctl"
install -m 0755 "$BIN/tandem-bench" "$R/usr/bin/tandem-bench"
for f in "$R/usr/sbin/tandemd" "$R/usr/bin/tandemctl" "$R/usr/bin/tandem-bench"; do
    objcopy --strip-debug --strip-unneeded "$f"
done

# The unit as the repository has it, pointed at the packaged binary, and never started
# without a configuration.
sed -e 's#/usr/local/bin/tandemd#/usr/sbin/tandemd#g' \
    -e 's#^After=network-online.target#ConditionPathExists=/etc/tandem/tandem.toml\nAfter=network-online.target#' \
    deploy/systemd/tandemd.service > "$R/lib/systemd/system/tandemd.service"
grep -q '^ConditionPathExists=/etc/tandem/tandem.toml' "$R/lib/systemd/system/tandemd.service" ||
    { echo "build-deb.sh: could not add ConditionPathExists to the unit" >&2; exit 1; }
chmod 0644 "$R/lib/systemd/system/tandemd.service"

# The example configuration is the conffile; /etc/tandem/tandem.toml is the operator's.
install -m 0644 deploy/tandem.example.toml "$R/etc/tandem/tandem.example.toml"
install -m 0644 deploy/examples/*.toml "$R/usr/share/doc/$PKG/examples/"

# Man pages, generated from the command-line definitions.
MAN=$STAGE/man
mkdir -p "$MAN"
"$BIN/tandemd" --write-man-pages "$MAN"
"$BIN/tandemctl" --write-man-pages "$MAN"
"$BIN/tandem-bench" --write-man-pages "$MAN"
for page in "$MAN"/*.[18]; do
    section=${page##*.}
    gzip -9n < "$page" > "$R/usr/share/man/man$section/$(basename "$page").gz"
done
[[ -f $R/usr/share/man/man8/tandemd.8.gz && -f $R/usr/share/man/man1/tandemctl.1.gz ]] ||
    { echo "build-deb.sh: man pages missing" >&2; exit 1; }

gzip -9n < README.md > "$R/usr/share/doc/$PKG/README.md.gz"
install -m 0644 deploy/deb/copyright "$R/usr/share/doc/$PKG/copyright"
gzip -9n < deploy/deb/changelog > "$R/usr/share/doc/$PKG/changelog.Debian.gz"

for s in postinst prerm postrm; do
    install -m 0755 "deploy/deb/$s" "$R/DEBIAN/$s"
done
printf '/etc/tandem/tandem.example.toml\n' > "$R/DEBIAN/conffiles"

# Shared-library dependencies as dpkg-shlibdeps finds them.
mkdir -p "$STAGE/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$PKG" "$PKG" > "$STAGE/debian/control"
DEPENDS=$(cd "$STAGE" && dpkg-shlibdeps -O -e root/usr/sbin/tandemd -e root/usr/bin/tandemctl \
    -e root/usr/bin/tandem-bench 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[[ -n $DEPENDS ]] || { echo "build-deb.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
SIZE=$(du -sk --exclude=DEBIAN "$R" | cut -f1)

sed -e "s/@VERSION@/$DEBVER/" -e "s/@ARCH@/$ARCH/" -e "s/@DEPENDS@/$DEPENDS/" -e "s/@SIZE@/$SIZE/" \
    deploy/deb/control.in > "$R/DEBIAN/control"

mkdir -p "$OUT"
DEB=$OUT/${PKG}_${DEBVER}_${ARCH}.deb
dpkg-deb --root-owner-group -Zxz --build "$R" "$DEB" >/dev/null
echo "$DEB"

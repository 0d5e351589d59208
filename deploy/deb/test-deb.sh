#!/usr/bin/env bash
# test-deb.sh - the Debian package as an operator meets it: build it, install it with dpkg -i
# on this machine, check what it installed (binaries, unit, conffile, man pages), run the
# installed tandemd --check-config on the installed example, check that nothing started, then
# remove and purge it and check that the configuration and the leases stay.
#
#   sudo bash deploy/deb/test-deb.sh [--no-build]
#
# Refuses to run if a tandem package, /etc/tandem or /var/lib/tandem is already there (it would
# have to touch an operator's files); removes everything it created, also on failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
[[ $(id -u) == 0 ]] || { echo "test-deb.sh: run as root (dpkg -i)" >&2; exit 1; }
if dpkg-query -W -f='${Status}' tandem 2>/dev/null | grep -v 'not-installed' >/dev/null; then
    echo "test-deb.sh: a tandem package is installed on this machine already; not touching it" >&2
    exit 1
fi
for d in /etc/tandem /var/lib/tandem; do
    [[ ! -e $d ]] || { echo "test-deb.sh: $d exists already; not touching it" >&2; exit 1; }
done

OUT=$(mktemp -d /tmp/tandem-deb-test.XXXXXX)
cleanup() {
    dpkg -P tandem >/dev/null 2>&1 || true
    rm -rf /etc/tandem /var/lib/tandem "$OUT"
}
trap cleanup EXIT
fail() { echo "test-deb.sh: FAIL: $*" >&2; exit 1; }
ok() { echo "test-deb.sh: ok: $*"; }

DEB=$(bash deploy/deb/build-deb.sh --out "$OUT" "$@" | tail -n1)
[[ -f $DEB ]] || fail "no package built"
ok "built $(basename "$DEB") ($(du -k "$DEB" | cut -f1) KiB)"
dpkg-deb --info "$DEB" | grep '^ Depends: .*libc6' >/dev/null || fail "no libc6 dependency: $(dpkg-deb --info "$DEB")"

dpkg -i "$DEB"
[[ $(dpkg-query -W -f='${Status}' tandem) == "install ok installed" ]] || fail "not installed"
for f in /usr/sbin/tandemd /usr/bin/tandemctl /usr/bin/tandem-bench; do
    [[ -x $f ]] || fail "$f missing"
done
/usr/bin/tandemctl --version | grep '^tandemctl ' >/dev/null || fail "tandemctl --version"
UNIT=/lib/systemd/system/tandemd.service
grep -q '^ExecStart=/usr/sbin/tandemd --config /etc/tandem/tandem.toml$' "$UNIT" || fail "unit ExecStart"
grep -q '^ConditionPathExists=/etc/tandem/tandem.toml$' "$UNIT" || fail "unit starts without a configuration"
if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify "$UNIT" 2>&1 | grep -v -i 'not running\|/run/systemd' | grep -i 'error\|invalid' &&
        fail "systemd-analyze verify complains about the unit"
fi
dpkg-query -W -f='${Conffiles}\n' tandem | grep '/etc/tandem/tandem.example.toml' >/dev/null ||
    fail "the example configuration is not a conffile"
for page in /usr/share/man/man8/tandemd.8.gz /usr/share/man/man1/tandemctl.1.gz \
    /usr/share/man/man1/tandem-bench.1.gz /usr/share/man/man1/tandemctl-failover.1.gz; do
    [[ -f $page ]] || fail "$page missing"
    zcat "$page" | grep '^\.TH' >/dev/null || fail "$page is not a man page"
done
zcat /usr/share/man/man8/tandemd.8.gz | grep -- 'check\\-config' >/dev/null || fail "tandemd.8 lacks --check-config"
ok "files, unit, conffile and man pages in place"

/usr/sbin/tandemd --check-config /etc/tandem/tandem.example.toml || fail "the installed example does not pass --check-config"
ok "installed tandemd accepts the installed example"
[[ ! -e /etc/tandem/tandem.toml ]] || fail "the package wrote /etc/tandem/tandem.toml"
pgrep -x tandemd >/dev/null && pgrep -a -x tandemd | grep /usr/sbin/tandemd >/dev/null && fail "the package started tandemd without a configuration"
[[ -d /var/lib/tandem ]] || fail "no /var/lib/tandem"

# The operator's configuration and a lease journal, which removal must keep.
cp /etc/tandem/tandem.example.toml /etc/tandem/tandem.toml
echo "lease journal stand-in" > /var/lib/tandem/worker-0.00000000.log
dpkg -r tandem
[[ ! -e /usr/sbin/tandemd && ! -e /usr/bin/tandemctl ]] || fail "binaries left after dpkg -r"
[[ -f /etc/tandem/tandem.toml && -f /etc/tandem/tandem.example.toml ]] || fail "dpkg -r removed configuration"
[[ -f /var/lib/tandem/worker-0.00000000.log ]] || fail "dpkg -r removed the leases"
ok "dpkg -r kept /etc/tandem and /var/lib/tandem"
dpkg -P tandem
[[ ! -e /etc/tandem/tandem.example.toml ]] || fail "dpkg -P kept the conffile"
[[ -f /etc/tandem/tandem.toml && -f /var/lib/tandem/worker-0.00000000.log ]] || fail "dpkg -P removed the operator's configuration or the leases"
ok "dpkg -P kept the operator's configuration and the leases"
echo "test-deb.sh: all checks passed"

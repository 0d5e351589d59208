#!/usr/bin/env bash
# install-deps.sh - install what Tandem's build, tests and lab demo need on Debian 12 (bookworm).
#
#   sudo bash deploy/install-deps.sh            build + network-namespace tests + demo
#   sudo bash deploy/install-deps.sh --fuzz     also the nightly toolchain and cargo-fuzz
#   sudo bash deploy/install-deps.sh --lab      also kea-dhcp4-server (for ../shared/lab/run-all.sh)
#
# Idempotent: packages already installed are not touched, and `apt-get update` runs only when
# something is missing. Works with no stdin (CI=true): everything is non-interactive.
# Daemons that Debian packages would start on install (isc-dhcp-server, isc-dhcp-relay,
# kea-dhcp4-server) are kept from starting while installing, and services this script newly
# installed are disabled afterwards: the tests run their own copies inside network namespaces.
set -euo pipefail

WANT_FUZZ=0; WANT_LAB=0
for a in "$@"; do
    case $a in
        --fuzz) WANT_FUZZ=1 ;;
        --lab) WANT_LAB=1 ;;
        -h|--help) sed -n 2,13p "$0"; exit 0 ;;
        *) echo "install-deps.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done

log() { printf '[install-deps %s] %s\n' "$(date +%T)" "$*" >&2; }

[[ $(id -u) == 0 ]] || { echo "install-deps.sh: run as root (sudo bash $0)" >&2; exit 1; }
if [[ -r /etc/os-release ]]; then
    # shellcheck disable=SC1091
    . /etc/os-release
    [[ ${VERSION_CODENAME:-} == bookworm ]] || log "warning: written for Debian 12 (bookworm), this is ${PRETTY_NAME:-unknown}"
fi

# Debian package -> why it is needed
PKGS=(
    ca-certificates curl git build-essential pkg-config   # toolchain bootstrap
    openssl                                               # test certificates (tests/admin_tls.rs)
    clang llvm libbpf-dev linux-libc-dev                  # XDP program build (ebpf/, clang -target bpf)
    iproute2 procps time python3                          # namespaces, ss, /usr/bin/time, demo table
    ethtool                                               # receive queues of veth (multi-worker AF_XDP)
    isc-dhcp-client                                       # dhclient
    dhcpcd-base                                           # dhcpcd binary without Debian's service unit
    udhcpc busybox                                        # udhcpc
    isc-dhcp-relay                                        # dhcrelay
    kea-admin                                             # perfdhcp (Kea 2.2)
    tcpdump tshark                                        # ACK captures (crash test), dissectors
    faketime                                              # clock-skew tests
    isc-dhcp-server                                       # dhcpd (failover partner tests)
    dpkg-dev binutils                                     # the .deb: dpkg-shlibdeps, objcopy
    bind9 bind9-utils bind9-dnsutils                      # named, tsig-keygen, dig (ddns/tests/bind.rs)
)
SERVICES=(isc-dhcp-server isc-dhcp-relay bind9)
if (( WANT_LAB )); then PKGS+=(kea-dhcp4-server); SERVICES+=(kea-dhcp4-server); fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep 'install ok installed' >/dev/null; }

missing=()
for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done
newly_services=()
for s in "${SERVICES[@]}"; do installed "$s" || newly_services+=("$s"); done

if (( ${#missing[@]} )); then
    log "apt: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # keep Debian's postinst scripts from starting DHCP daemons on the real interfaces
    made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1
    fi
    trap '(( made_policy )) && rm -f /usr/sbin/policy-rc.d' EXIT
    echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
    apt-get update -q </dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
    if (( made_policy )); then rm -f /usr/sbin/policy-rc.d; made_policy=0; fi
    # services this run installed: not enabled at boot, not running
    if [[ -d /run/systemd/system ]]; then
        for s in "${newly_services[@]}"; do
            unit=$s; [[ $s == bind9 ]] && unit=named   # bind9's unit is named.service
            systemctl disable --now "$unit" >/dev/null 2>&1 || true
        done
    fi
else
    log "apt: all ${#PKGS[@]} packages present"
fi

# ---------------------------------------------------------------- Rust (rustup; Debian's rustc is too old)
# When run through sudo, install into root's home (the tests run as root anyway).
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v rustup >/dev/null 2>&1; then
    if command -v cargo >/dev/null 2>&1; then
        log "cargo found without rustup: $(cargo --version)"
    else
        log "rust: installing rustup + stable"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
            sh -s -- -y -q --profile minimal --default-toolchain stable --component rustfmt,clippy
    fi
fi
if command -v rustup >/dev/null 2>&1; then
    rustup component list --toolchain stable --installed 2>/dev/null | grep '^rustfmt' >/dev/null ||
        rustup component add --toolchain stable rustfmt
    rustup component list --toolchain stable --installed 2>/dev/null | grep '^clippy' >/dev/null ||
        rustup component add --toolchain stable clippy
    if (( WANT_FUZZ )); then
        rustup toolchain list | grep '^nightly' >/dev/null ||
            { log "rust: installing nightly (cargo-fuzz needs it)"; rustup toolchain install nightly --profile minimal; }
    fi
fi
if (( WANT_FUZZ )) && ! cargo fuzz --version >/dev/null 2>&1; then
    log "rust: cargo install cargo-fuzz --locked"
    cargo install cargo-fuzz --locked -q
fi
log "done"

#!/usr/bin/env bash
# scale.sh - Tandem's scale figures on this machine: start time and resident memory with one /8
# scope and with 1 000 /16 scopes, restart with 1 M active leases (segment replay, then
# snapshot), the compaction of 1 M leases, journal bytes per lease, and the full update
# (UPDREQALL) of 1 M bindings from one Tandem partner to a fresh one until both are NORMAL,
# and of 100 k bindings from ISC dhcpd 4.4 (primary) to a fresh Tandem secondary.
#
#   sudo bash deploy/lab/scale.sh [--leases N] [--isc-leases N] [--keep]
#
# Uses target/release/{tandemd,tandemctl,tandem-bench} (built with cargo build --release if
# missing), two network namespaces tdm-scale-a / tdm-scale-b joined by one veth pair (the UDP
# backend: nothing here measures the data plane), and a work directory under /tmp (removed at
# the end unless --keep). Everything it starts is stopped and the namespaces are deleted, also
# on failure. Prints one line per figure and a summary table.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LEASES=1000000
ISC_LEASES=100000
KEEP=0
while (( $# )); do
    case $1 in
        --leases) LEASES=$2; shift 2 ;;
        --isc-leases) ISC_LEASES=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "scale.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
[[ $(id -u) == 0 ]] || { echo "scale.sh: run as root (network namespaces)" >&2; exit 1; }
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
if [[ ! -x $BIN/tandemd || ! -x $BIN/tandemctl || ! -x $BIN/tandem-bench ]]; then
    (cd "$ROOT" && cargo build --release --locked --bin tandemd --bin tandemctl --bin tandem-bench)
fi
WORK=$(mktemp -d /tmp/tandem-scale.XXXXXX)
NA=tdm-scale-a
NB=tdm-scale-b
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "$NA" 2>/dev/null || true
    ip netns del "$NB" 2>/dev/null || true
    if (( KEEP )); then echo "scale.sh: work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
for n in "$NA" "$NB"; do
    ip netns del "$n" 2>/dev/null || true
    ip netns add "$n"
    ip -n "$n" link set lo up
done
ip -n "$NA" link add tdm0 type veth peer name tdm1 netns "$NB"
ip -n "$NA" addr add 10.0.0.1/8 dev tdm0
ip -n "$NB" addr add 10.0.0.2/8 dev tdm1
ip -n "$NA" link set tdm0 up
ip -n "$NB" link set tdm1 up

declare -a TABLE=()
figure() { TABLE+=("$(printf '%-60s %s' "$1" "$2")"); echo "scale.sh: $1: $2"; }
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f} s')"; }
elapsed() {  # two log time stamps (RFC 3339, UTC): seconds between them
    python3 -c 'import sys; from datetime import datetime as d
f = lambda s: d.fromisoformat(s.rstrip("Z"))
print(f"{(f(sys.argv[2]) - f(sys.argv[1])).total_seconds():.2f} s")' "$1" "$2"
}
rss_mib() { awk '/VmRSS/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$1/status"; }

server_section() {  # id iface state
    cat <<EOF
[server]
server_id = "$1"
interfaces = ["$2"]
state_dir = "$3"
durability = "sync"
admin_listen = "127.0.0.1:9167"
log_format = "text"
[dataplane]
backend = "udp"
EOF
}

# start NS CONFIG LOG: starts tandemd, waits until it logs "tandemd serving" (60 s at most);
# sets STARTED_PID and STARTED_SECS.
start() {
    local t0 t1 i
    t0=$(now)
    nsenter --net="/run/netns/$1" "$BIN/tandemd" --config "$2" >"$3" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    for ((i = 0; i < 6000; i++)); do
        grep -q "tandemd serving" "$3" && break
        kill -0 "$STARTED_PID" 2>/dev/null || { echo "scale.sh: tandemd exited:" >&2; tail -5 "$3" >&2; exit 1; }
        sleep 0.01
    done
    grep -q "tandemd serving" "$3" || { echo "scale.sh: tandemd not serving after 60 s" >&2; tail -5 "$3" >&2; exit 1; }
    t1=$(now)
    STARTED_SECS=$(secs "$t0" "$t1")
}
stop() {  # PID
    kill "$1"
    wait "$1" 2>/dev/null || true
}

# 1. One /8 scope (16.7 M addresses).
{
    server_section 10.0.0.1 tdm0 "$WORK/s8"
    printf '[[scope]]\nname = "big"\nsubnet = "10.0.0.0/8"\ninterface = "tdm0"\n'
    printf 'ranges = ["10.0.0.10-10.255.255.250"]\nlease_time = 86400\n'
} >"$WORK/s8.toml"
start "$NA" "$WORK/s8.toml" "$WORK/s8.log"
figure "start, one /8 scope (16.7 M addresses)" "$STARTED_SECS, $(rss_mib "$STARTED_PID")"
stop "$STARTED_PID"

# 2. 1 000 /16 scopes.
{
    server_section 10.0.0.1 tdm0 "$WORK/s16"
    for ((i = 0; i < 1000; i++)); do
        a=$((10 + i / 256)) b=$((i % 256))
        printf '[[scope]]\nname = "s%d"\nsubnet = "%d.%d.0.0/16"\n' "$i" "$a" "$b"
        printf 'ranges = ["%d.%d.0.10-%d.%d.255.250"]\nlease_time = 3600\n' "$a" "$b" "$a" "$b"
    done
} >"$WORK/s16.toml"
start "$NA" "$WORK/s16.toml" "$WORK/s16.log"
figure "start, 1 000 /16 scopes (65 M addresses)" "$STARTED_SECS, $(rss_mib "$STARTED_PID")"
stop "$STARTED_PID"

# 3. Restart with LEASES active leases: from the segment, then (after the compaction the first
# start runs) from the snapshot.
"$BIN/tandem-bench" seed-journal --dir "$WORK/s8" --first 10.0.0.10 --leases "$LEASES" >/dev/null
seg_bytes=$(stat -c %s "$WORK"/s8/worker-0.*.log)
figure "journal bytes per lease (segment)" "$((seg_bytes / LEASES)) B"
sync
start "$NA" "$WORK/s8.toml" "$WORK/r1.log"
figure "restart, $LEASES leases replayed from a segment" "$STARTED_SECS, $(rss_mib "$STARTED_PID")"
for ((i = 0; i < 6000; i++)); do grep -q "compaction done" "$WORK/r1.log" && break; sleep 0.01; done
grep -q "compaction done" "$WORK/r1.log" || { echo "scale.sh: no compaction after 60 s" >&2; exit 1; }
c0=$(grep -m1 "rotated; compacting" "$WORK/r1.log" | cut -d' ' -f1)
c1=$(grep -m1 "compaction done" "$WORK/r1.log" | cut -d' ' -f1)
figure "compaction of $LEASES leases (background)" "$(elapsed "$c0" "$c1")"
stop "$STARTED_PID"
snap_bytes=$(stat -c %s "$WORK"/s8/worker-0.*.snap)
figure "snapshot bytes per lease" "$((snap_bytes / LEASES)) B"
start "$NA" "$WORK/s8.toml" "$WORK/r2.log"
figure "restart, $LEASES leases from the snapshot" "$STARTED_SECS, $(rss_mib "$STARTED_PID")"
stop "$STARTED_PID"

# 4. A load-balance pair: the primary holds LEASES leases, the secondary starts empty and asks
# for all of them (UPDREQALL); timed from the failover connection to both NORMAL.
pair_config() {  # id partner role iface state
    server_section "$1" "$4" "$5"
    cat <<EOF
[[scope]]
name = "big"
subnet = "10.0.0.0/11"
interface = "$4"
ranges = ["10.0.0.10-10.31.255.250"]
lease_time = 86400
[[failover]]
name = "scale"
role = "$3"
partner = "$2"
listen = "$1"
mode = "load-balance"
load_balance_percent = 50
mclt = "1h"
startup_wait = "2s"
scopes = ["big"]
EOF
}
pair_config 10.0.0.1 10.0.0.2 primary tdm0 "$WORK/pa" >"$WORK/pa.toml"
pair_config 10.0.0.2 10.0.0.1 secondary tdm1 "$WORK/pb" >"$WORK/pb.toml"
"$BIN/tandem-bench" seed-journal --dir "$WORK/pa" --first 10.0.0.10 --leases "$LEASES" >/dev/null
start "$NB" "$WORK/pb.toml" "$WORK/pb.log"
PB=$STARTED_PID
start "$NA" "$WORK/pa.toml" "$WORK/pa.log"
state() {  # NS: "STATE PARTNER_STATE"
    nsenter --net="/run/netns/$1" "$BIN/tandemctl" failover show scale --json 2>/dev/null |
        python3 -c 'import sys,json; v=json.load(sys.stdin); print(v.get("state"), v.get("partner_state"))' 2>/dev/null || true
}
for ((i = 0; i < 1200; i++)); do
    [[ $(state "$NB") == "NORMAL NORMAL" && $(state "$NA") == "NORMAL NORMAL" ]] && break
    sleep 0.1
done
[[ $(state "$NB") == "NORMAL NORMAL" ]] || { echo "scale.sh: the pair never reached NORMAL" >&2; tail -5 "$WORK/pb.log" >&2; exit 1; }
t_up=$(grep -m1 "failover connection up" "$WORK/pb.log" | cut -d' ' -f1)
t_normal=$(grep -m1 "to=NORMAL" "$WORK/pb.log" | cut -d' ' -f1)
active=$(nsenter --net="/run/netns/$NB" "$BIN/tandemctl" stats --json | python3 -c 'import sys,json; print(json.load(sys.stdin)["leases_active"])')
[[ $active == "$LEASES" ]] || { echo "scale.sh: the secondary holds $active leases, not $LEASES" >&2; exit 1; }
figure "UPDREQALL of $LEASES bindings, connection to NORMAL" \
    "$(elapsed "$t_up" "$t_normal"), secondary $(rss_mib "$PB")"

stop "$STARTED_PID"
stop "$PB"

# 5. ISC dhcpd 4.4 as the primary with ISC_LEASES active leases in its leases file (and its
# failover state NORMAL), a fresh Tandem secondary: timed from the connection to the end of the
# update (UPDDONE: Tandem leaves RECOVER). dhcpd moves to PARTNER-DOWN while it has no partner,
# so Tandem then waits MCLT in RECOVER-WAIT, as the draft requires: not timed.
DHCPD=$(command -v dhcpd || echo /usr/sbin/dhcpd)
if [[ -x $DHCPD ]]; then
    python3 - "$WORK/dhcpd.leases" "$ISC_LEASES" <<'PY'
import ipaddress, sys, time
path, n = sys.argv[1], int(sys.argv[2])
now = int(time.time())
t = lambda s: time.strftime("%w %Y/%m/%d %H:%M:%S", time.gmtime(s))
out = ['failover peer "scale" state {\n  my state normal at %s;\n  partner state normal at %s;\n}\n'
       % (t(now - 60), t(now - 60))]
base = int(ipaddress.ip_address("10.0.0.10"))
for i in range(n):
    mac = "02:00:%02x:%02x:%02x:%02x" % ((i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255)
    out.append("lease %s {\n  starts %s;\n  ends %s;\n  tstp %s;\n  tsfp %s;\n  cltt %s;\n"
               "  binding state active;\n  next binding state expired;\n  hardware ethernet %s;\n}\n"
               % (ipaddress.ip_address(base + i), t(now - 60), t(now + 86400), t(now + 86400),
                  t(now + 86400), t(now - 60), mac))
open(path, "w").write("".join(out))
PY
    cat >"$WORK/dhcpd.conf" <<'CONF'
authoritative;
ddns-update-style none;
default-lease-time 86400;
max-lease-time 86400;
ping-check false;
failover peer "scale" {
  primary;
  mclt 3600;
  split 128;
  address 10.0.0.1;
  port 647;
  peer address 10.0.0.2;
  peer port 647;
  max-response-delay 30;
  max-unacked-updates 10;
  load balance max seconds 3;
}
subnet 10.0.0.0 netmask 255.0.0.0 {
  pool {
    failover peer "scale";
    range 10.0.0.10 10.3.255.250;
  }
}
CONF
    {
        server_section 10.0.0.2 tdm1 "$WORK/isc-b"
        cat <<'CONF'
[[scope]]
name = "big"
subnet = "10.0.0.0/8"
interface = "tdm1"
ranges = ["10.0.0.10-10.3.255.250"]
lease_time = 86400
[[failover]]
name = "scale"
role = "secondary"
partner = "10.0.0.1"
listen = "10.0.0.2"
mode = "load-balance"
load_balance_percent = 50
mclt = "3600s"
max_response_delay = "30s"
max_unacked_updates = 10
startup_wait = "2s"
scopes = ["big"]
CONF
    } >"$WORK/isc-b.toml"
    touch "$WORK/dhcpd.pid"
    nsenter --net="/run/netns/$NA" "$DHCPD" -4 -f -d -cf "$WORK/dhcpd.conf" -lf "$WORK/dhcpd.leases" \
        -pf "$WORK/dhcpd.pid" tdm0 >"$WORK/dhcpd.log" 2>&1 &
    PIDS+=("$!")
    for ((i = 0; i < 600; i++)); do grep -q "Server starting service" "$WORK/dhcpd.log" && break; sleep 0.1; done
    grep -q "Server starting service" "$WORK/dhcpd.log" ||
        { echo "scale.sh: dhcpd did not start" >&2; tail -5 "$WORK/dhcpd.log" >&2; exit 1; }
    start "$NB" "$WORK/isc-b.toml" "$WORK/isc-b.log"
    for ((i = 0; i < 1200; i++)); do grep -q "from=RECOVER to=" "$WORK/isc-b.log" && break; sleep 0.1; done
    grep -q "from=RECOVER to=" "$WORK/isc-b.log" ||
        { echo "scale.sh: the update from dhcpd never finished" >&2; tail -5 "$WORK/isc-b.log" >&2; exit 1; }
    t_up=$(grep -m1 "failover connection up" "$WORK/isc-b.log" | cut -d' ' -f1)
    t_done=$(grep -m1 "from=RECOVER to=" "$WORK/isc-b.log" | cut -d' ' -f1)
    active=$(nsenter --net="/run/netns/$NB" "$BIN/tandemctl" stats --json |
        python3 -c 'import sys,json; print(json.load(sys.stdin)["leases_active"])')
    [[ $active == "$ISC_LEASES" ]] ||
        { echo "scale.sh: Tandem holds $active of dhcpd's $ISC_LEASES leases" >&2; exit 1; }
    figure "UPDREQALL of $ISC_LEASES bindings from ISC dhcpd, to UPDDONE" "$(elapsed "$t_up" "$t_done")"
else
    echo "scale.sh: dhcpd is not installed (isc-dhcp-server): no ISC figure"
fi

echo
echo "Tandem scale figures ($(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(df -hT "$WORK" | awk 'NR == 2 { print $2 " on " $1 }'))"
printf '  %s\n' "${TABLE[@]}"

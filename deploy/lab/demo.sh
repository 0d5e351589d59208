#!/usr/bin/env bash
# demo.sh - Tandem in a network-namespace lab: real DHCP clients plus a perfdhcp load.
#
#   sudo bash deploy/lab/demo.sh [--rate N] [--period S] [--clients N] [--no-install] [--keep]
#
# 1. installs what is missing (deploy/install-deps.sh) and builds tandemd/tandemctl (release);
# 2. builds namespaces (all named tdm-<pid>-demo-*) joined by veth pairs and two bridges:
#
#      tdm-..-demo-c1 (dhclient) ──┐                                  ┌── tdm-..-demo-srv1 tandemd
#      tdm-..-demo-c2 (dhcpcd)   ──┼── bridge br0 in tdm-..-demo-lan ─┘    tdm0 10.99.0.1/24 (scope "lan")
#      tdm-..-demo-c3 (udhcpc)   ──┘                                       tdm1 10.98.0.1/16 (scope "load")
#      tdm-..-demo-load: perfdhcp on bridge br0 10.98.0.2/16 ───────────────┘  (relay-style, giaddr 10.98.0.2)
#
#    A failover partner (a later issue) is one more `add_server 2` call: it gets its own
#    namespace on both bridges, and perfdhcp switches to broadcast mode.
# 3. starts tandemd with a config in a temp dir, runs the three real clients (one of them matches
#    a vendor-class policy), then one bounded perfdhcp run (-r RATE for -p PERIOD seconds);
# 4. prints leases/s, loss, server CPU (from /proc/PID/stat utime+stime) per lease, and the real
#    clients' leases as tandemctl reports them; then removes everything (also on Ctrl-C/failure).
#
# Nothing leaves the namespaces; the clients' scripts only set addresses inside their own
# namespace (no resolv.conf, no host routes). --keep keeps the temp dir (logs, config, journal).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RATE=5000 PERIOD=10 NCLIENTS=50000 INSTALL=1 KEEP=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --rate) RATE=$2; shift 2 ;;
        --period) PERIOD=$2; shift 2 ;;
        --clients) NCLIENTS=$2; shift 2 ;;
        --no-install) INSTALL=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n 2,24p "$0"; exit 0 ;;
        *) echo "demo.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $RATE =~ ^[0-9]+$ && $RATE -gt 0 && $PERIOD =~ ^[0-9]+$ && $PERIOD -gt 0 && $PERIOD -le 120 ]] ||
    { echo "demo.sh: --rate must be > 0 and --period 1..120" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "demo.sh: run as root: sudo bash $0 (it creates network namespaces)" >&2; exit 1; }

log() { printf '[demo %s] %s\n' "$(date +%T)" "$*" >&2; }

# ---------------------------------------------------------------- install + build
(( INSTALL )) && bash "$ROOT/deploy/install-deps.sh"
export PATH="$HOME/.cargo/bin:$PATH"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
log "building tandemd and tandemctl (release) into $TARGET"
(cd "$ROOT" && cargo build --release --locked -q -p tandem-controlplane --bins)
TANDEMD=$TARGET/release/tandemd
TANDEMCTL=$TARGET/release/tandemctl

# ---------------------------------------------------------------- bookkeeping + cleanup
WORK=$(mktemp -d /tmp/tdm-demo.XXXXXX)
chmod 755 "$WORK"                       # dhcpcd drops privileges and reads its config here
P="tdm-$$-demo"                         # namespace prefix; pid = this script's, so stale ones are recognisable
declare -A PID=()                       # name -> PID of every process this script started
NSES=()

stop_pid() {  # pid: TERM, KILL after 5 s
    local p=$1
    kill -0 "$p" 2>/dev/null || return 0
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; fi
    wait "$p" 2>/dev/null || true
}
cleanup() {
    local n ns p
    trap - EXIT INT TERM
    for n in "${!PID[@]}"; do [[ $n == tandemd* ]] || stop_pid "${PID[$n]}"; done
    for n in "${!PID[@]}"; do [[ $n == tandemd* ]] && stop_pid "${PID[$n]}"; done
    for ns in "${NSES[@]}"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    if (( KEEP )); then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkns() {  # role
    ip netns add "$P-$1"; NSES+=("$P-$1")
    ip -n "$P-$1" link set lo up
    ip netns exec "$P-$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}
link() {  # role-a if-a role-b if-b: veth created directly inside both namespaces
    ip link add "$2" netns "$P-$1" type veth peer name "$4" netns "$P-$3"
    ip -n "$P-$1" link set "$2" up; ip -n "$P-$3" link set "$4" up
}
bridge_port() {  # role bridge port
    ip -n "$P-$1" link set "$3" master "$2"
    for _ in $(seq 50); do
        bridge -n "$P-$1" link show dev "$3" | grep -q 'state forwarding' && return 0; sleep 0.1
    done
    log "bridge port $3 not forwarding"; return 1
}
spawn() {  # name role cmd...: run in the namespace, log to $WORK/name.log
    local name=$1 role=$2; shift 2
    ip netns exec "$P-$role" "$@" >"$WORK/$name.log" 2>&1 &
    PID[$name]=$!
}
proc_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }  # utime+stime, all threads
udp_rcvbuf_errors() {  # role -> UDP receive-buffer drops in that namespace (since it was made)
    # shellcheck disable=SC2016  # awk's own $ fields
    ip netns exec "$P-$1" awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) c[$i] = i; h = 1 } else print $c["RcvbufErrors"] }' /proc/net/snmp
}

# ---------------------------------------------------------------- topology
mkns lan; ip -n "$P-lan" link add br0 type bridge stp_state 0 forward_delay 0; ip -n "$P-lan" link set br0 up
mkns load; ip -n "$P-load" link add br0 type bridge stp_state 0 forward_delay 0; ip -n "$P-load" link set br0 up
ip -n "$P-load" addr add 10.98.0.2/16 dev br0

server_host() { echo $(( $1 * 2 - 1 )); }   # server 1 -> .1, a partner 2 -> .3

add_server() {  # index: namespace srvN on both bridges, plus its config
    local i=$1 h; h=$(server_host "$1")
    mkns "srv$i"
    link "srv$i" tdm0 lan "s$i"; bridge_port lan br0 "s$i"
    link "srv$i" tdm1 load "s$i"; bridge_port load br0 "s$i"
    ip -n "$P-srv$i" addr add "10.99.0.$h/24" dev tdm0
    ip -n "$P-srv$i" addr add "10.98.0.$h/16" dev tdm1
    mkdir -p "$WORK/srv$i/state"
    cat >"$WORK/srv$i/tandem.toml" <<EOF
# demo server $i (written by deploy/lab/demo.sh)
[server]
server_id = "10.99.0.$h"
interfaces = ["tdm0", "tdm1"]
state_dir = "$WORK/srv$i/state"
durability = "sync"
admin_listen = "127.0.0.1:9167"

[options]
dns_servers = ["10.99.0.53"]
domain_name = "demo.tandem"

# real clients, directly attached to the lan bridge
[[scope]]
name = "lan"
subnet = "10.99.0.0/24"
interface = "tdm0"
ranges = ["10.99.0.100-10.99.0.199"]
lease_time = "10m"

[scope.options]
routers = ["10.99.0.254"]

[[scope.policy]]
name = "phones"
order = 1
conditions = [{ vendor_class = "tandem-demo-phone" }]
ranges = ["10.99.0.180-10.99.0.199"]

# perfdhcp's simulated clients (relay-style: giaddr 10.98.0.2)
[[scope]]
name = "load"
subnet = "10.98.0.0/16"
ranges = ["10.98.1.0-10.98.255.250"]
lease_time = "1h"
EOF
}

start_server() {  # index
    local i=$1
    ip netns exec "$P-srv$i" "$TANDEMD" --check-config "$WORK/srv$i/tandem.toml"
    spawn "tandemd$i" "srv$i" "$TANDEMD" --config "$WORK/srv$i/tandem.toml"
    for _ in $(seq 100); do
        kill -0 "${PID[tandemd$i]}" 2>/dev/null || { log "tandemd $i died:"; tail -20 "$WORK/tandemd$i.log" >&2; return 1; }
        if ip netns exec "$P-srv$i" ss -Hlun 'sport = :67' | grep -q . &&
           ip netns exec "$P-srv$i" "$TANDEMCTL" --admin 127.0.0.1:9167 stats --json >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    log "tandemd $i not ready after 10 s"; tail -20 "$WORK/tandemd$i.log" >&2; return 1
}

ctl() { local i=$1; shift; ip netns exec "$P-srv$i" "$TANDEMCTL" --admin 127.0.0.1:9167 "$@"; }

log "namespaces $P-*, work dir $WORK"
add_server 1
start_server 1
log "tandemd running (pid ${PID[tandemd1]})"

# ---------------------------------------------------------------- real clients
EV=$WORK/events
: >"$EV"
cat >"$WORK/dhclient-script" <<EOF
#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
echo "dhclient \$reason \${new_ip_address:--}" >> $EV
case \$reason in
BOUND|RENEW|REBIND|REBOOT) ip addr replace "\$new_ip_address/\$new_subnet_mask" dev "\$interface" ;;
EXPIRE|FAIL|RELEASE|STOP) ip -4 addr flush dev "\$interface" ;;
esac
exit 0
EOF
cat >"$WORK/udhcpc-script" <<EOF
#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
echo "udhcpc \$1 \${ip:--}" >> $EV
case \$1 in
deconfig) ip -4 addr flush dev "\$interface" ;;
bound|renew) ip addr replace "\$ip/\${mask:-24}" dev "\$interface" ;;
esac
exit 0
EOF
cat >"$WORK/dhcpcd-script" <<EOF
#!/bin/sh
echo "dhcpcd \$reason \${new_ip_address:--}" >> $EV
exit 0
EOF
chmod 755 "$WORK"/*-script
printf 'send vendor-class-identifier "tandem-demo-phone";\n' >"$WORK/dhclient.conf"
printf 'ipv4only\nnoipv4ll\nnoarp\noption subnet_mask, routers\n' >"$WORK/dhcpcd.conf"
mkdir -p "$WORK/dhcpcd-db"

declare -A MAC=()
n=0
for c in dhclient dhcpcd udhcpc; do
    n=$((n+1)); mkns "c$n"; link "c$n" tdm0 lan "c$n"; bridge_port lan br0 "c$n"
    MAC[$c]=$(ip -n "$P-c$n" -br link show dev tdm0 | awk '{print $3}')
done
spawn dhclient c1 dhclient -4 -d -cf "$WORK/dhclient.conf" -sf "$WORK/dhclient-script" \
    -lf "$WORK/dhclient.leases" -pf "$WORK/dhclient.pid" tdm0
# dhcpcd's run and db directories are compiled in: give it private ones (mount namespace of ip netns exec)
spawn dhcpcd c2 sh -c "mount -t tmpfs -o size=4m,mode=0755 tdmrun /run && mount --bind $WORK/dhcpcd-db /var/lib/dhcpcd && exec dhcpcd -f $WORK/dhcpcd.conf -c $WORK/dhcpcd-script -B -4 tdm0"
spawn udhcpc c3 udhcpc -f -R -i tdm0 -s "$WORK/udhcpc-script" -p "$WORK/udhcpc.pid" -t 10 -T 2 -A 2
log "real clients started: dhclient (vendor class tandem-demo-phone), dhcpcd, udhcpc"
for _ in $(seq 300); do
    [[ $(grep -cE ' (BOUND|REBOOT|bound) [0-9]' "$EV" || true) -ge 3 ]] && break; sleep 0.1
done
grep -E ' (BOUND|REBOOT|bound) [0-9]' "$EV" | sed 's/^/  /' >&2 || true

# ---------------------------------------------------------------- bounded perfdhcp load
log "perfdhcp: $RATE DORA/s for $PERIOD s over $NCLIENTS simulated clients (relay-style, unicast)"
CLK_TCK=$(getconf CLK_TCK)
t0=$(proc_ticks "${PID[tandemd1]}"); w0=$(date +%s.%N)
q0_srv=$(udp_rcvbuf_errors srv1); q0_load=$(udp_rcvbuf_errors load)
timeout $((PERIOD + 30)) ip netns exec "$P-load" perfdhcp -4 -r "$RATE" -n $((RATE * PERIOD)) -R "$NCLIENTS" \
    -p "$PERIOD" -W 1000000 \
    -l 10.98.0.2 10.98.0.1 >"$WORK/perfdhcp.log" 2>&1 || true
w1=$(date +%s.%N); t1=$(proc_ticks "${PID[tandemd1]}")
q_srv=$(( $(udp_rcvbuf_errors srv1) - q0_srv )); q_load=$(( $(udp_rcvbuf_errors load) - q0_load ))
kill -0 "${PID[tandemd1]}" 2>/dev/null || { log "tandemd died under load:"; tail -20 "$WORK/tandemd1.log" >&2; exit 1; }

# perfdhcp prints one statistics block per exchange: take sent/received/avg delay from each
read -r d_sent _ _ a_recv do_ms ra_ms < <(awk '
    /Statistics for: DISCOVER-OFFER/ { s = "do" } /Statistics for: REQUEST-ACK/ { s = "ra" }
    /^sent packets:/ { sent[s] = $3 } /^received packets:/ { recv[s] = $3 } /^avg delay:/ { avg[s] = $3 }
    END { printf "%d %d %d %d %s %s\n", sent["do"], recv["do"], sent["ra"], recv["ra"], avg["do"] == "" ? "-" : avg["do"], avg["ra"] == "" ? "-" : avg["ra"] }
' "$WORK/perfdhcp.log")
python3 - "$d_sent" "$a_recv" "$do_ms" "$ra_ms" "$PERIOD" "$RATE" "$((t1 - t0))" "$CLK_TCK" "$w0" "$w1" \
    "$q_srv" "$q_load" <<'PY'
import sys
sent, acks, do_ms, ra_ms, period, rate, ticks, tck, w0, w1, q_srv, q_load = sys.argv[1:]
sent, acks, period, rate, ticks, tck = int(sent), int(acks), int(period), int(rate), int(ticks), int(tck)
wall = float(w1) - float(w0)
cpu_s = ticks / tck
rows = [
    ("offered DORA/s", f"{rate}"),
    ("DISCOVERs sent", f"{sent}"),
    ("leases (ACKs received)", f"{acks}"),
    ("leases/s", f"{acks / period:.0f}"),
    ("loss (DISCOVER without ACK)", f"{100 * (1 - acks / sent):.2f} %" if sent else "-"),
    ("avg latency DISCOVER-OFFER / REQUEST-ACK", f"{do_ms} / {ra_ms} ms"),
    ("server CPU (utime+stime)", f"{cpu_s:.2f} s over {wall:.1f} s = {100 * cpu_s / wall:.0f} % of one core"),
    ("server CPU per lease", f"{1e6 * cpu_s / acks:.1f} us" if acks else "-"),
    ("UDP receive-buffer drops: server / perfdhcp", f"{q_srv} / {q_load}"),
]
w = max(len(k) for k, _ in rows)
print("\n== perfdhcp load against tandemd (durability sync, release build)")
for k, v in rows:
    print(f"  {k:<{w}}  {v}")
PY

# ---------------------------------------------------------------- the real clients' leases
ctl 1 lease list --json >"$WORK/leases.json"
python3 - "$WORK/leases.json" "dhclient=${MAC[dhclient]}" "dhcpcd=${MAC[dhcpcd]}" "udhcpc=${MAC[udhcpc]}" <<'PY'
import json, sys, time
leases = json.load(open(sys.argv[1]))
clients = dict(a.split("=", 1) for a in sys.argv[2:])
now = time.time()
print("\n== real clients (tandemctl lease list --json, scope \"lan\")")
print(f"  {'client':<9} {'mac':<17}  {'address':<15} {'state':<9} {'expires in':>10}  scope")
for name, mac in clients.items():
    mine = [l for l in leases if (l.get("mac") or "").lower() == mac.lower()]
    if not mine:
        print(f"  {name:<9} {mac:<17}  (no lease)")
    for l in mine:
        left = f"{int(l['expires'] - now)} s"
        print(f"  {name:<9} {mac:<17}  {l['address']:<15} {l['state']:<9} {left:>10}  {l.get('scope', '')}")
states = {}
for l in leases:
    states[l["state"]] = states.get(l["state"], 0) + 1
print("\n  all leases by state: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
PY
echo
echo "== tandemctl stats"
ctl 1 stats | sed 's/^/  /'
echo
log "done; cleaning up"

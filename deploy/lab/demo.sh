#!/usr/bin/env bash
# demo.sh - a Tandem failover pair on the XDP / AF_XDP data plane in a network-namespace lab:
# real DHCP clients, perfdhcp load, then a crash of one partner, service by the other, recovery.
#
#   sudo bash deploy/lab/demo.sh [--rate N] [--period S] [--clients N] [--backend xdp|auto|udp]
#                                [--no-install] [--keep]
#
# 1. installs what is missing (deploy/install-deps.sh) and builds tandemd/tandemctl (cargo profile `demo`: release without LTO);
# 2. builds namespaces (all named tdm-<pid>-demo-*) joined by veth pairs (the servers' with two
#    RX and TX queues: each partner runs two AF_XDP workers, one per queue; one queue with
#    --backend udp) and two bridges:
#
#      tdm-..-demo-c1 (dhclient) ──┐                                  ┌── srv1 tandemd (primary)
#      tdm-..-demo-c2 (dhcpcd)   ──┼── bridge br0 in tdm-..-demo-lan ─┤     tdm0 10.99.0.1/24 (scope "lan")
#      tdm-..-demo-c3 (udhcpc)   ──┘                                  └── srv2 tandemd (secondary)
#                                                                         tdm0 10.99.0.3/24
#      tdm-..-demo-load: perfdhcp on bridge br0 10.64.0.2/12 ── srv1 tdm1 10.64.0.1, srv2 tdm1 10.64.0.3
#                        (broadcast: both partners see every client; scope "load")
#
#    The partners run one load-balance failover relationship (50/50 by RFC 3074 hash bucket, MCLT
#    30 s) over TCP 647 on the lan bridge. Both serve with `[dataplane] backend = "xdp"`: the XDP
#    steering program on tdm0 and tdm1 (native mode, generic if native cannot attach: tandemd logs
#    why) redirects DHCP to the AF_XDP socket of the receiving queue, and drops in the kernel the
#    requests whose hash bucket the partner owns; of two workers per partner, each serves its own
#    buckets' clients and hands the other's frames to it (broadcasts share one queue). The demo
#    prints each partner's mode (`tandemctl stats --json`, `xdp.mode`) and the handoffs between
#    its workers. --backend udp runs the same demo on UDP sockets, two workers each (requests
#    steered to their owner's socket in the kernel by the SO_REUSEPORT and socket filter programs).
# 3. phase 1: both partners NORMAL, the three real clients bind (one matches a vendor-class
#    policy), one bounded perfdhcp run (-r RATE for -p PERIOD s); phase 2: srv1 is killed with
#    SIGKILL and srv2 serves every client alone (COMMUNICATIONS-INTERRUPTED, leases capped at
#    MCLT) under a second perfdhcp run; phase 3: srv1 restarts, catches up, both return to NORMAL,
#    a third run;
# 4. prints per phase leases/s, loss, the partners' states and their CPU per lease, then per phase
#    and partner the XDP verdicts (redirected to AF_XDP, dropped because the partner owns the
#    bucket, passed to the kernel): in NORMAL each partner drops about half of perfdhcp's
#    broadcasts in the kernel, alone the survivor drops none; then the real clients' addresses
#    across the failover, their leases and the failover status; then removes everything (also on
#    Ctrl-C/failure). Exit status 1 if a real client's address changed or the XDP verdicts do not
#    show that split (or a real client got no address).
#
# Nothing leaves the namespaces; the clients' scripts only set addresses inside their own
# namespace (no resolv.conf, no host routes). --keep keeps the temp dir (logs, config, journal).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RATE=2000 PERIOD=8 NCLIENTS=30000 INSTALL=1 KEEP=0 BACKEND=xdp
while [[ $# -gt 0 ]]; do
    case $1 in
        --rate) RATE=$2; shift 2 ;;
        --period) PERIOD=$2; shift 2 ;;
        --clients) NCLIENTS=$2; shift 2 ;;
        --backend) BACKEND=$2; shift 2 ;;
        --no-install) INSTALL=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n 2,39p "$0"; exit 0 ;;
        *) echo "demo.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $RATE =~ ^[0-9]+$ && $RATE -gt 0 && $PERIOD =~ ^[0-9]+$ && $PERIOD -gt 0 && $PERIOD -le 120 ]] ||
    { echo "demo.sh: --rate must be > 0 and --period 1..120" >&2; exit 2; }
[[ $NCLIENTS =~ ^[0-9]+$ && $NCLIENTS -gt 0 ]] || { echo "demo.sh: --clients must be > 0" >&2; exit 2; }
[[ $BACKEND == xdp || $BACKEND == auto || $BACKEND == udp ]] ||
    { echo "demo.sh: --backend must be xdp, auto or udp" >&2; exit 2; }
# Two workers per partner (AF_XDP: one per receive queue; UDP: one SO_REUSEPORT socket each).
WORKERS=2
[[ $(id -u) == 0 ]] || { echo "demo.sh: run as root: sudo bash $0 (it creates network namespaces)" >&2; exit 1; }

log() { printf '[demo %s] %s\n' "$(date +%T)" "$*" >&2; }

# ---------------------------------------------------------------- install + build
(( INSTALL )) && bash "$ROOT/deploy/install-deps.sh"
export PATH="$HOME/.cargo/bin:$PATH"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
log "building tandemd and tandemctl (profile demo) into $TARGET/demo"
built=$SECONDS
(cd "$ROOT" && cargo build --profile demo --locked -q -p tandem-controlplane --bins)
log "built in $((SECONDS - built)) s"
TANDEMD=$TARGET/demo/tandemd
TANDEMCTL=$TARGET/demo/tandemctl

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
link() {  # role-a if-a role-b if-b [queues]: veth created directly inside both namespaces, with
    # `queues` RX and TX queues on each end (default 1; veth gets one per possible CPU otherwise,
    # and AF_XDP needs one worker per receive queue)
    local q=${5:-1}
    ip link add "$2" netns "$P-$1" numrxqueues "$q" numtxqueues "$q" type veth \
        peer name "$4" netns "$P-$3" numrxqueues "$q" numtxqueues "$q"
    ip -n "$P-$1" link set "$2" up; ip -n "$P-$3" link set "$4" up
}
bridge_port() {  # role bridge port
    ip -n "$P-$1" link set "$3" master "$2"
    for _ in $(seq 50); do
        bridge -n "$P-$1" link show dev "$3" | grep 'state forwarding' >/dev/null && return 0; sleep 0.1
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
ip -n "$P-load" addr add 10.64.0.2/12 dev br0

server_host() { echo $(( $1 * 2 - 1 )); }   # server 1 -> .1, a partner 2 -> .3

add_server() {  # index: namespace srvN on both bridges, plus its config
    local i=$1 h; h=$(server_host "$1")
    mkns "srv$i"
    link "srv$i" tdm0 lan "s$i" "$WORKERS"; bridge_port lan br0 "s$i"
    link "srv$i" tdm1 load "s$i" "$WORKERS"; bridge_port load br0 "s$i"
    ip -n "$P-srv$i" addr add "10.99.0.$h/24" dev tdm0
    ip -n "$P-srv$i" addr add "10.64.0.$h/12" dev tdm1
    mkdir -p "$WORK/srv$i/state"
    local role=secondary ph; ph=$(server_host $(( 3 - i )))
    (( i == 1 )) && role=primary
    cat >"$WORK/srv$i/tandem.toml" <<EOF
# demo server $i (written by deploy/lab/demo.sh)
[server]
server_id = "10.99.0.$h"
interfaces = ["tdm0", "tdm1"]
state_dir = "$WORK/srv$i/state"
durability = "sync"
admin_listen = "127.0.0.1:9167"
workers = $WORKERS

# XDP steering + one AF_XDP socket per interface and worker (--backend udp: kernel UDP sockets)
[dataplane]
backend = "$BACKEND"
xdp_mode = "auto"

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

# perfdhcp's simulated clients, directly attached to the load bridge
[[scope]]
name = "load"
subnet = "10.64.0.0/12"
interface = "tdm1"
ranges = ["10.64.1.0-10.79.255.250"]
lease_time = "1h"

[[failover]]
name = "demo-pair"
role = "$role"
partner = "10.99.0.$ph"
listen = "10.99.0.$h"
mode = "load-balance"
load_balance_percent = 50
mclt = "30s"
max_response_delay = "5s"
startup_wait = "2s"
scopes = ["lan", "load"]
EOF
}

start_server() {  # index
    local i=$1
    ip netns exec "$P-srv$i" "$TANDEMD" --check-config "$WORK/srv$i/tandem.toml"
    spawn "tandemd$i" "srv$i" "$TANDEMD" --config "$WORK/srv$i/tandem.toml"
    # ready: it logged "tandemd serving" (no UDP socket on port 67 with AF_XDP) and answers the admin API
    for _ in $(seq 200); do
        kill -0 "${PID[tandemd$i]}" 2>/dev/null || { log "tandemd $i died:"; tail -20 "$WORK/tandemd$i.log" >&2; return 1; }
        if grep -q 'tandemd serving' "$WORK/tandemd$i.log" &&
           ip netns exec "$P-srv$i" "$TANDEMCTL" --admin 127.0.0.1:9167 stats --json >/dev/null 2>&1; then
            log "srv$i: $(backend_of "$i")"
            # why native XDP or AF_XDP could not be used, as tandemd logged it
            grep -E 'native XDP unavailable|falling back to the UDP backend' "$WORK/tandemd$i.log" |
                sed "s/^/  srv$i: /" >&2 || true
            return 0
        fi
        sleep 0.1
    done
    log "tandemd $i not ready after 20 s"; tail -20 "$WORK/tandemd$i.log" >&2; return 1
}

ctl() { local i=$1; shift; ip netns exec "$P-srv$i" "$TANDEMCTL" --admin 127.0.0.1:9167 "$@"; }

# The XDP program's verdicts from `tandemctl stats --json` (`xdp` object, summed over tdm0 and tdm1):
# redirected to the AF_XDP socket, dropped for a partner-owned bucket, passed to the kernel (every
# other verdict: the failover link's TCP, ARP, other ports, no socket on the queue, ...), and of
# those passed, the ones that were not UDP.
XDP_PY='
import json, sys
st = json.load(sys.stdin)
x = st.get("xdp")
u = st.get("udp")
if sys.argv[1] == "mode":
    if x:
        print("XDP " + x["mode"] + ", " + sys.argv[2] + " AF_XDP workers")
    else:
        print("UDP sockets (no XDP), %d workers%s" % (u["workers"], ", steered in the kernel" if u["steered_in_kernel"] and u["workers"] > 1 else ""))
elif sys.argv[1] == "handoffs":
    h = x or u
    print(" ".join(str(h[k]) for k in ("handoff_out", "handoff_in", "handoff_full")))
elif x is None:
    print("- - - -")
else:
    passed = ("runt", "not_ipv4", "bad_ipv4", "not_udp", "fragment", "other_port", "redirect_failed")
    print(x["redirect"], x["partner_drop"], sum(x[k] for k in passed), x["not_udp"])'
backend_of() { ctl "$1" stats --json 2>/dev/null | python3 -c "$XDP_PY" mode "$WORKERS" 2>/dev/null || echo "unknown (stats failed)"; }
handoffs() { ctl "$1" stats --json 2>/dev/null | python3 -c "$XDP_PY" handoffs 2>/dev/null || echo "- - -"; }
xdp_counts() { ctl "$1" stats --json 2>/dev/null | python3 -c "$XDP_PY" counts 2>/dev/null || echo "- - - -"; }

fo_state() {  # index -> "STATE/PARTNER-STATE" of the relationship ("down" if it does not answer)
    ctl "$1" failover show demo-pair --json 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(d["state"] + "/" + (d["partner_state"] or "-"))' 2>/dev/null || echo "down"
}
wait_state() {  # index state timeout-s
    local k
    for k in $(seq $(( $3 * 5 ))); do
        [[ $(fo_state "$1") == "$2"/* ]] && return 0
        sleep 0.2
    done
    log "srv$1 not in $2 after $3 s (now $(fo_state "$1"))"; tail -20 "$WORK/tandemd$1.log" >&2; return 1
}

log "namespaces $P-*, work dir $WORK"
add_server 1
add_server 2
start_server 1
start_server 2
wait_state 1 NORMAL 30
wait_state 2 NORMAL 30
log "failover pair NORMAL: srv1 (pid ${PID[tandemd1]}) primary, srv2 (pid ${PID[tandemd2]}) secondary"

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

# ---------------------------------------------------------------- bounded perfdhcp load, per phase
CLK_TCK=$(getconf CLK_TCK)
RESULTS=$WORK/results.tsv
: >"$RESULTS"
ticks_of() { if kill -0 "$1" 2>/dev/null; then proc_ticks "$1"; else echo 0; fi; }
load_phase() {  # label mac-byte: one bounded perfdhcp run (broadcast on the load bridge), one row
    local label=$1 mb=$2 out=$WORK/perfdhcp-$2.log
    local p1=${PID[tandemd1]} p2=${PID[tandemd2]} t0a t0b t1a t1b w0 w1 x0a x0b x1a x1b
    log "$label: perfdhcp $RATE DORA/s for $PERIOD s over $NCLIENTS simulated clients (broadcast)"
    x0a=$(xdp_counts 1); x0b=$(xdp_counts 2)
    t0a=$(ticks_of "$p1"); t0b=$(ticks_of "$p2"); w0=$(date +%s.%N)
    timeout $((PERIOD + 30)) ip netns exec "$P-load" perfdhcp -4 -r "$RATE" -n $((RATE * PERIOD)) \
        -R "$NCLIENTS" -p "$PERIOD" -W 1000000 -b "mac=00:$mb:00:00:00:00" -l br0 >"$out" 2>&1 || true
    w1=$(date +%s.%N); t1a=$(ticks_of "$p1"); t1b=$(ticks_of "$p2")
    x1a=$(xdp_counts 1); x1b=$(xdp_counts 2)
    (( t1a >= t0a )) || t1a=$t0a
    read -r d_sent _ r_sent a_recv do_ms ra_ms < <(awk '
        /Statistics for: DISCOVER-OFFER/ { s = "do" } /Statistics for: REQUEST-ACK/ { s = "ra" }
        /^sent packets:/ { sent[s] = $3 } /^received packets:/ { recv[s] = $3 } /^avg delay:/ { avg[s] = $3 }
        END { printf "%d %d %d %d %s %s\n", sent["do"], recv["do"], sent["ra"], recv["ra"], avg["do"] == "" ? "-" : avg["do"], avg["ra"] == "" ? "-" : avg["ra"] }
    ' "$out")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$d_sent" "$a_recv" "$do_ms" "$ra_ms" \
        "$((t1a - t0a))" "$((t1b - t0b))" "$(fo_state 1)" "$(fo_state 2)" "$PERIOD" \
        "$r_sent" "$x0a" "$x1a" "$x0b" "$x1b" >>"$RESULTS"
}
client_addrs() {  # the real clients' latest addresses, on one line
    local c a out=""
    for c in dhclient dhcpcd udhcpc; do
        a=$(grep -E "^$c (BOUND|REBOOT|RENEW|REBIND|bound|renew) [0-9]" "$EV" | tail -1 | awk '{print $3}')
        out+="$c=${a:--} "
    done
    echo "$out"
}

load_phase "1 pair NORMAL" 0a
before=$(client_addrs)

log "phase 2: kill -9 srv1 (pid ${PID[tandemd1]}); srv2 serves every client alone"
kill -KILL "${PID[tandemd1]}"; wait "${PID[tandemd1]}" 2>/dev/null || true
wait_state 2 COMMUNICATIONS-INTERRUPTED 15
load_phase "2 srv1 killed" 0b
during=$(client_addrs)

log "phase 3: restart srv1; it catches up from srv2 and both return to NORMAL"
start_server 1
wait_state 1 NORMAL 90
wait_state 2 NORMAL 30
load_phase "3 recovered" 0c
after=$(client_addrs)

python3 - "$RESULTS" "$CLK_TCK" "$RATE" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
tck, rate = int(sys.argv[2]), int(sys.argv[3])
print(f"\n== perfdhcp against the Tandem pair ({rate} DORA/s offered for each phase, durability sync)")
table = [("phase", "leases/s", "loss", "avg DO/RA ms", "CPU us/lease (both)", "srv1 state/partner", "srv2 state/partner")]
for label, sent, acks, do_ms, ra_ms, ta, tb, s1, s2, period, *_ in rows:
    sent, acks, period = int(sent), int(acks), int(period)
    cpu = (int(ta) + int(tb)) / tck
    table.append((label, f"{acks / period:.0f}", f"{100 * (1 - acks / sent):.2f} %" if sent else "-",
                  f"{do_ms}/{ra_ms}", f"{1e6 * cpu / acks:.1f}" if acks else "-", s1, s2))
w = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
for r in table:
    print(("  " + "  ".join(c.ljust(w[i]) for i, c in enumerate(r))).rstrip())
PY
# XDP verdicts per phase and partner (the counters' increase over each perfdhcp run), and the check
# that the load went through XDP: in NORMAL both partners drop part of it in the kernel, alone the
# survivor drops none.
XDP_OK=1
python3 - "$RESULTS" "$BACKEND" <<'PY' || XDP_OK=0
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
def delta(before, after):  # [redirect, partner_drop, passed, not UDP] over the run; None if down or no XDP
    b, a = before.split(), after.split()
    return None if "-" in b or "-" in a else [int(y) - int(x) for x, y in zip(b, a)]
table = [("phase", "perfdhcp sent", "srv1 redirect", "partner_drop", "passed", "kernel-drop",
          "srv2 redirect", "partner_drop", "passed", "kernel-drop")]
per_phase = []
for label, d_sent, *_, r_sent, x0a, x1a, x0b, x1b in rows:
    cells, per = [label, str(int(d_sent) + int(r_sent))], []
    for before, after in ((x0a, x1a), (x0b, x1b)):
        d = delta(before, after)
        per.append(d)
        if d is None:
            cells += ["-", "-", "-", "-"]
        else:
            seen = d[0] + d[1]
            cells += [str(d[0]), str(d[1]), str(d[2]), f"{100 * d[1] / seen:.1f} %" if seen else "-"]
    per_phase.append(per)
    table.append(cells)
if sys.argv[2] != "xdp" and all(d is None for per in per_phase for d in per):
    print(f"\n== XDP verdicts: none (--backend {sys.argv[2]}: the partners served on UDP sockets)")
    sys.exit(0)
print("\n== XDP verdicts per phase (tandemctl stats --json, xdp; tdm0 + tdm1). perfdhcp broadcasts its")
print("   DISCOVERs and REQUESTs, so each partner sees all of them; kernel-drop = partner_drop share")
w = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
for r in table:
    print("  " + "  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)))
passed = [d for per in per_phase for d in per if d is not None]
if passed:
    print(f"  passed = frames for the kernel: {sum(d[3] for d in passed)} of the {sum(d[2] for d in passed)} were not UDP")
    print("  (the failover link's TCP on tdm0: binding updates and their acks), the rest ARP and the like")
def split(d):  # both partners saw load and dropped 25..75 % of it in the kernel
    return d is not None and d[0] > 0 and 0.25 <= d[1] / (d[0] + d[1]) <= 0.75
problems = []
if len(per_phase) != 3:
    problems.append(f"{len(per_phase)} phases recorded, 3 expected")
else:
    for i in (0, 2):
        for k, d in enumerate(per_phase[i]):
            if not split(d):
                problems.append(f"phase {i + 1}: srv{k + 1} did not drop about half in the kernel")
    alone = per_phase[1][1]
    if alone is None or alone[0] == 0 or alone[1] != 0:
        problems.append("phase 2: srv2 alone did not take every request through AF_XDP without drops")
if problems:
    print("  XDP check FAILED: " + "; ".join(problems))
    sys.exit(1)
print("  XDP check: in NORMAL each partner dropped its partner's half in the kernel; alone, srv2 dropped none")
PY
if (( WORKERS > 1 )); then
    echo
    if [[ $BACKEND == udp ]]; then
        echo "== handoffs between each partner's two UDP workers (tandemctl stats --json: udp.handoff_*):"
        echo "   the kernel steers each request to its owner's socket, so none should be needed"
    else
        echo "== handoffs between each partner's two AF_XDP workers (tandemctl stats --json: xdp.handoff_*;"
        echo "   srv1's count from its restart): a frame that arrived on the other worker's queue is handed"
        echo "   to the owner of its client's bucket, which answers it"
    fi
    for i in 1 2; do
        read -r hout hin hfull <<<"$(handoffs "$i")"
        echo "  srv$i: handed out $hout, answered by the owner $hin, ring full $hfull"
    done
    read -r hout hin hfull <<<"$(handoffs 2)"
    if [[ $BACKEND == xdp ]] && ! [[ $hout =~ ^[0-9]+$ && $hout -gt 0 && $hin == "$hout" && $hfull == 0 ]]; then
        echo "  handoff check FAILED: srv2's workers did not hand frames to each other and answer them all"
        XDP_OK=0
    fi
    if [[ $BACKEND == udp ]] && ! [[ $hin == "$hout" && $hfull == 0 ]]; then
        echo "  handoff check FAILED: srv2's UDP workers lost requests between them"
        XDP_OK=0
    fi
fi
echo
echo "== the real clients' addresses across the failover"
echo "  before the crash:  $before"
echo "  srv1 down:         $during"
echo "  after recovery:    $after"
ADDR_OK=1
if [[ $before == *=-* ]]; then
    echo "  a real client had no address before the crash: see $WORK/events (run with --keep)"; ADDR_OK=0
elif [[ $before == "$during" && $during == "$after" ]]; then
    echo "  every client kept its address"
else
    echo "  an address changed: see $WORK/events (run with --keep)"; ADDR_OK=0
fi

# ---------------------------------------------------------------- the real clients' leases
ctl 2 lease list --scope lan --json >"$WORK/leases.json"
python3 - "$WORK/leases.json" "dhclient=${MAC[dhclient]}" "dhcpcd=${MAC[dhcpcd]}" "udhcpc=${MAC[udhcpc]}" <<'PY'
import json, sys, time
leases = json.load(open(sys.argv[1]))
clients = dict(a.split("=", 1) for a in sys.argv[2:])
now = time.time()
print("\n== real clients on srv2 (tandemctl lease list --json, scope \"lan\")")
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
echo "== tandemctl failover show demo-pair (srv1)"
ctl 1 failover show demo-pair | sed 's/^/  /'
echo
for i in 1 2; do ctl "$i" stats --json >"$WORK/stats-srv$i.json" 2>/dev/null || true; done  # for --keep
if (( ADDR_OK && XDP_OK )); then
    log "done; cleaning up"
else
    log "FAILED:$( (( ADDR_OK )) || echo " a real client's address changed;")$( (( XDP_OK )) || echo " the XDP verdicts (above);") cleaning up"
    exit 1
fi

#!/usr/bin/env bash
# lab-compare.sh - measure Tandem beside Kea and ISC dhcpd in the shared peer lab, in one run.
#
#   sudo bash deploy/lab/lab-compare.sh                          tandem + kea-st-persist
#   sudo bash deploy/lab/lab-compare.sh --targets "custom kea-st-persist dhcpd" --reps 3
#   sudo LAB=/path/to/shared/lab bash deploy/lab/lab-compare.sh --quick
#
# Runs LAB/run-all.sh (default ../shared/lab next to the repository) with its `custom` target
# set to the release tandemd and deploy/lab/lab-kb.toml (kb0 / 10.77.0.1 in netns kb-srv, pool
# 10.77.0.10-10.77.255.250, 3600 s leases, durability sync); the lease journal is wiped before
# every start. Arguments go to run-all.sh (default: --targets "custom kea-st-persist").
# The lab directory may be read-only: run state and results go to LAB_RUN / LAB_RESULTS
# (default /tmp/tandem-lab/{run,results}). Needs kea-dhcp4-server: install-deps.sh --lab.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LAB=${LAB:-$(cd "$ROOT/.." && pwd)/shared/lab}
[[ -x $LAB/run-all.sh ]] || { echo "lab-compare.sh: no run-all.sh in $LAB (set LAB=...)" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "lab-compare.sh: run as root" >&2; exit 1; }
[[ ${SKIP_DEPS:-0} == 1 ]] || bash "$ROOT/deploy/install-deps.sh" --lab
export PATH="$HOME/.cargo/bin:$PATH"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release --locked -q -p tandem-controlplane --bins)

CFG=$ROOT/deploy/lab/lab-kb.toml
STATE=$(awk -F'"' '/^state_dir/ { print $2 }' "$CFG")
"$TARGET/release/tandemd" --check-config "$CFG"

export LAB_RUN=${LAB_RUN:-/tmp/tandem-lab/run} LAB_RESULTS=${LAB_RESULTS:-/tmp/tandem-lab/results}
mkdir -p "$LAB_RUN" "$LAB_RESULTS"
# The lab's peer configs carry absolute paths of the machine they were written on (lease files and
# logs under .../anchors/run). Run a private copy whose configs point at this run's directory.
LAB_COPY=${LAB_COPY:-/tmp/tandem-lab/lab}
rm -rf "$LAB_COPY"; mkdir -p "$LAB_COPY"; cp -r "$LAB"/. "$LAB_COPY"/; chmod -R u+w "$LAB_COPY"
for f in "$LAB_COPY"/configs/*; do
    sed -i -E "s#/[^\" ]*/anchors/run/#$LAB_RUN/#g; s#/[^\" ]*/anchors/configs/#$LAB_COPY/configs/#g" "$f"
done
LAB=$LAB_COPY
export CUSTOM_NAME=tandem
export CUSTOM_CMD="$TARGET/release/tandemd --config $CFG"
export CUSTOM_PRE="rm -rf '$STATE'"
[[ $# -gt 0 ]] || set -- --targets "custom kea-st-persist"
exec "$LAB/run-all.sh" "$@"

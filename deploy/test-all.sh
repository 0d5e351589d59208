#!/usr/bin/env bash
# test-all.sh - run every test Tandem has, the way CI does (.ci/run calls this).
#
#   sudo bash deploy/test-all.sh
#
# Steps (each timed; a failing step is reported and the others still run; the exit status is
# non-zero if any step failed, and a failed install stops the run at once):
#   deps     deploy/install-deps.sh --fuzz --lab   (skip with SKIP_DEPS=1; --lab: Kea for the compare tests)
#   fmt      cargo fmt --check                (workspace and fuzz/)
#   clippy   cargo clippy --workspace --all-targets -- -D warnings
#   test     cargo test --workspace           (unit, simulation, and the network-namespace
#                                              tests in controlplane/tests/netns.rs: real
#                                              dhclient/dhcpcd/udhcpc/dhcrelay/perfdhcp; need root)
#   deb      deploy/deb/test-deb.sh: build the .deb, dpkg -i it on this machine, check it, remove
#            and purge it (configuration and leases stay)
#   fuzz     cargo +nightly fuzz run T -- -max_total_time=$FUZZ_SECS for every target in fuzz/
#            (corpus and artifacts go to a temp dir, not the repository; FUZZ_SECS=0 skips)
# Honours CARGO_TARGET_DIR. Needs root: the namespace tests create network namespaces.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
FUZZ_SECS=${FUZZ_SECS:-20}
[[ $(id -u) == 0 ]] || {
    echo "test-all.sh: run as root (sudo bash deploy/test-all.sh): the network-namespace tests need it" >&2
    exit 1
}

declare -a SUMMARY=() FAILED_LOGS=()
FAILED=0
STEP_LOGS=$(mktemp -d /tmp/tandem-steps.XXXXXX)
trap 'rm -rf "$STEP_LOGS"' EXIT
step() {  # name cmd...: run, time and record it; returns its status
    local name=$1 t0=$SECONDS rc=0 log; shift
    log=$STEP_LOGS/$(( ${#SUMMARY[@]} + 1 )).log
    printf '\n===== [%s] %s: %s\n' "$(date +%T)" "$name" "$*" >&2
    # The step's output (stdout and stderr, shown on stderr) is also kept, so that a failed
    # step's last lines can be repeated at the end, where a reader of the log's tail sees them.
    "$@" > >(tee "$log" >&2) 2>&1 || rc=$?
    if (( rc == 0 )); then
        SUMMARY+=("$(printf '%-28s ok    %4ds' "$name" $((SECONDS - t0)))")
    else
        SUMMARY+=("$(printf '%-28s FAIL  %4ds (exit %d)' "$name" $((SECONDS - t0)) "$rc")")
        FAILED_LOGS+=("$name|$log")
        FAILED=$((FAILED + 1))
    fi
    return "$rc"
}
report() {
    local entry
    for entry in "${FAILED_LOGS[@]}"; do   # the test step repeats its failed tests below instead
        [[ ${entry%%|*} == test ]] && continue
        printf '\n===== last 40 lines of the failed step %s\n' "${entry%%|*}" >&2
        tail -n 40 "${entry#*|}" | cut -c1-300 >&2
    done
    printf '\n===== summary (total %ds)\n' "$SECONDS" >&2
    printf '  %s\n' "${SUMMARY[@]}" >&2
    if (( FAILED )); then printf '%d step(s) FAILED\n' "$FAILED" >&2; else echo "all steps passed" >&2; fi
}

if [[ ${SKIP_DEPS:-0} != 1 ]]; then
    step deps bash deploy/install-deps.sh --fuzz --lab || { report; exit 1; }
fi
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

FMT_COLOR=never; [[ -t 1 ]] && FMT_COLOR=auto
step fmt cargo fmt --all --check -- --color "$FMT_COLOR" || true
if [[ -f fuzz/Cargo.toml ]]; then
    step fmt-fuzz cargo fmt --manifest-path fuzz/Cargo.toml --check -- --color "$FMT_COLOR" || true
fi
step clippy cargo clippy --workspace --all-targets --locked -- -D warnings || true
TEST_LOG=$(mktemp /tmp/tandem-test.XXXXXX)
# --no-fail-fast: every test binary runs even after one fails, so one run reports every failure.
run_tests() { set -o pipefail; cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$TEST_LOG"; }
step test run_tests || true
step deb bash deploy/deb/test-deb.sh || true

if [[ -f fuzz/Cargo.toml && $FUZZ_SECS != 0 ]]; then
    FUZZ_TMP=$(mktemp -d /tmp/tandem-fuzz.XXXXXX)
    FUZZ_ARGS=()
    [[ -n ${CARGO_TARGET_DIR:-} ]] && FUZZ_ARGS+=(--target-dir "$CARGO_TARGET_DIR/fuzz")
    mkdir -p "$FUZZ_TMP/artifacts"
    if step fuzz-build cargo +nightly fuzz build "${FUZZ_ARGS[@]}"; then
        for t in $(cargo +nightly fuzz list); do
            mkdir -p "$FUZZ_TMP/corpus/$t" "$FUZZ_TMP/artifacts/$t"
            seeds=()
            [[ -d fuzz/corpus/$t ]] && seeds+=("fuzz/corpus/$t")   # read-only seeds, if any are committed
            step "fuzz $t (${FUZZ_SECS}s)" timeout $((FUZZ_SECS + 300)) \
                cargo +nightly fuzz run "${FUZZ_ARGS[@]}" "$t" "$FUZZ_TMP/corpus/$t" "${seeds[@]}" -- \
                -max_total_time="$FUZZ_SECS" -artifact_prefix="$FUZZ_TMP/artifacts/$t/" -print_final_stats=1 ||
                echo "fuzz target $t failed: reproducer(s) in $FUZZ_TMP/artifacts/$t/" >&2
        done
    fi
    # keep the temp dir only if a target found something
    if find "$FUZZ_TMP/artifacts" -type f | grep . >/dev/null; then
        echo "fuzz artifacts kept in $FUZZ_TMP/artifacts" >&2
    else
        rm -rf "$FUZZ_TMP"
    fi
fi
report
# One closing line for the whole test run (every cargo test binary's counts added up), so a
# reader of the log sees the total rather than the last binary's (often a doc-test run of 0).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$TEST_LOG"
# The fuzz output buries the test output; repeat each failed test's own output (its panic
# message and what it printed, up to 80 lines each) last, where a reader of the log's tail sees it.
if grep -q '^test .* FAILED$' "$TEST_LOG"; then
    printf '\n===== failed tests\n'
    grep '^test .* FAILED$' "$TEST_LOG"
    awk '/^---- .* stdout ----$/ { on = 1; n = 0 }
         /^(failures:|test result:)/ { on = 0 }
         on && n++ < 80' "$TEST_LOG"
fi
rm -f "$TEST_LOG"
(( FAILED == 0 ))

#!/usr/bin/env bash
# The device test suite on emulated aarch64: bundles and reference outputs from the host, tests on ARM.
#
#   scripts/arm64_tests.sh [--cpus cortex-a72,cortex-a76] [--suite bookworm] [--extras onnx,tflite,openvino,postgres]
#                          [--work DIR] [--jobs N] [--skip-host] [--shard] [--plan] [--name NAME] [PYTEST ARGS...]
#
# 1. host (x86, training side installed): the same tests run once with GFN_EDGE_TEST_ARTIFACTS=DIR/bundles
#    and GFN_EDGE_TEST_CACHE=DIR/cache, which exports every bundle they open and caches every reference
#    output the training side computes for them. This is also the x86 baseline of the same assertions.
# 2. each CPU: scripts/arm64.sh runs them again in the emulated aarch64 Python (the built wheel, no
#    torch/tensorflow there) with GFN_EDGE_TEST_BUNDLES=DIR/bundles (read only) and the same cache.
# --skip-host: step 1 already ran, e.g. CI's main pytest with GFN_EDGE_TEST_ARTIFACTS=DIR/bundles and
# GFN_EDGE_TEST_CACHE=DIR/cache (.ci/run sets both), so the emulated runs start at once.
# PYTEST ARGS choose the tests (default: -m "device and not int8_export", as CI's host run prepares
# bundles for, and the tests/ files that hold device tests);
# CPUs run in parallel, --jobs at a time. --shard: the selected tests are split between the CPUs
# (collected on the host, dealt round-robin) instead of each CPU running all of them, except the tests
# marked `numerics` (every artifact's kernels against a reference), which every CPU runs: the cores
# differ in FP16 arithmetic and integer dot products, not in how the gallery locks or the door decides,
# so for the other tests a second CPU adds time, not coverage. --plan: print what each CPU would run
# (collected on the host) and stop. --name NAME: a second selection in the same DIR (CI's door video run)
# writes its reports beside the first's instead of over them. Writes DIR/junit-<suite>-<cpu>[-NAME].xml,
# DIR/pytest-<suite>-<cpu>[-NAME].log and DIR/timings.txt; fails when any run fails, collects nothing,
# or skips a test for a missing asset.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CPUS=cortex-a72,cortex-a76
SUITE=bookworm
WORK=${GFN_EDGE_ARM64_TESTS:-$ROOT/.arm64-tests}
# postgres: psycopg for the gallery tests against the host's PostgreSQL (below)
export ARM64_EXTRAS=${ARM64_EXTRAS:-onnx,tflite,openvino,postgres}
JOBS=2
while [ $# -gt 0 ]; do
    case "$1" in
        --cpus) CPUS=$2; shift 2 ;;
        --suite) SUITE=$2; shift 2 ;;
        --extras) export ARM64_EXTRAS=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --jobs) JOBS=$2; shift 2 ;;
        --skip-host) SKIP_HOST=1; shift ;;
        --shard) SHARD=1; shift ;;
        --plan) PLAN_ONLY=1; shift ;;
        --name) NAME=$2; shift 2
            [[ "$NAME" =~ ^[A-Za-z0-9_-]+$ ]] || { echo "arm64_tests.sh: --name takes letters, digits, '-' and '_' (it names report files), got '$NAME'" >&2; exit 2; } ;;
        -h|--help) sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) break ;;
    esac
done
if [ $# -eq 0 ]; then
    # the files that hold device tests: a whole tests/ folder would also import the training-side
    # test modules, which fail to import where there is no torch or TensorFlow
    mapfile -t device_files < <(cd "$ROOT" && grep -l -E '^pytestmark = pytest\.mark\.device|@pytest\.mark\.device' tests/test_*.py)
    set -- -m "device and not int8_export" "${device_files[@]}"
fi
mkdir -p "$WORK/bundles" "$WORK/cache"
WORK=$(cd "$WORK" && pwd)
TIMINGS=$WORK/timings.txt  # appended to: one line per step of every invocation
stamp() { printf '%-28s %5ds  %s\n' "$1" "$2" "$3" | tee -a "$TIMINGS" >&2; }

cd "$ROOT"
IFS=, read -r -a cpu_list <<<"$CPUS"
# --shard: each CPU's test ids, DIR/plan-<k>.txt, collected on the host (the tests' files import on x86)
if [ -n "${SHARD:-}" ]; then
    collect() { python -m pytest --collect-only -q -p no:cacheprovider "$@" 2>/dev/null | grep '::' || true; }
    mapfile -t all_ids < <(collect "$@")
    [ "${#all_ids[@]}" -gt 0 ] || { echo "arm64_tests.sh: --shard: the host collected no tests for: $*" >&2; exit 2; }
    # tests marked `numerics` (-k matches marker names; a -k of the caller's is overridden, hence the
    # intersection) run each artifact's kernels: every CPU runs them; the others are dealt round-robin
    declare -A is_numerics=()
    while IFS= read -r id; do is_numerics[$id]=1; done < <(collect "$@" -k numerics)
    for k in "${!cpu_list[@]}"; do : >"$WORK/plan-$k.txt"; done
    j=0 n=0
    for id in "${all_ids[@]}"; do
        if [ -n "${is_numerics[$id]:-}" ]; then
            n=$((n + 1))
            for k in "${!cpu_list[@]}"; do printf '%s\n' "$id" >>"$WORK/plan-$k.txt"; done
        else
            printf '%s\n' "$id" >>"$WORK/plan-$((j % ${#cpu_list[@]})).txt"
            j=$((j + 1))
        fi
    done
    echo "arm64_tests.sh: --shard: $n numerics tests on every CPU, $j others split between ${CPUS//,/ and }" >&2
fi
if [ -n "${PLAN_ONLY:-}" ]; then
    for k in "${!cpu_list[@]}"; do
        echo "# ${cpu_list[$k]}"
        if [ -n "${SHARD:-}" ]; then cat "$WORK/plan-$k.txt"; else printf '%s\n' "$*"; fi
    done
    exit 0
fi
if [ -n "${SKIP_HOST:-}" ]; then
    [ -n "$(ls -A "$WORK/bundles" 2>/dev/null)" ] || {
        echo "arm64_tests.sh: --skip-host, but $WORK/bundles is empty: run the tests on the host first with" \
            "GFN_EDGE_TEST_ARTIFACTS=$WORK/bundles GFN_EDGE_TEST_CACHE=$WORK/cache (or drop --skip-host)" >&2
        exit 2
    }
else
    t0=$(date +%s)
    set +e
    GFN_EDGE_TEST_ARTIFACTS=$WORK/bundles GFN_EDGE_TEST_CACHE=$WORK/cache \
        python -m pytest -q -p no:cacheprovider --junitxml="$WORK/junit-host.xml" "$@"
    code=$?
    set -e
    stamp "host $(uname -m)" $(( $(date +%s) - t0 )) "exit $code (prepares bundles and reference outputs)"
    [ "$code" = 0 ] || { echo "arm64_tests.sh: the host run failed (exit $code); not starting the emulated runs" >&2; exit "$code"; }
fi

# Build (or reuse) the emulated environment once before the parallel runs share it.
t0=$(date +%s)
bash scripts/arm64.sh --suite "$SUITE" --cpu "${CPUS%%,*}" --print-env >"$WORK/arm64-env-$SUITE.txt"
stamp "$SUITE arm64 environment" $(( $(date +%s) - t0 )) "rootfs, wheel, aarch64 packages (cached: seconds)"

# The gallery tests' PostgreSQL (test_gallery's [postgres] cases): a real server on the host, which
# the emulated Python reaches over loopback as a door unit reaches its site's server. Started here
# unless $GFN_EDGE_TEST_PG_DSN names one; needs the host's test dependencies (pgserver).
if [ -z "${GFN_EDGE_TEST_PG_DSN:-}" ] && [[ ",$ARM64_EXTRAS," == *,postgres,* ]]; then
    rm -f "$WORK/pg-dsn"
    python tests/fleet_servers.py postgres "$WORK/pg-dsn" >"$WORK/pg.log" 2>&1 &
    PG_PID=$!
    trap 'kill "$PG_PID" 2>/dev/null || true; wait "$PG_PID" 2>/dev/null || true' EXIT
    for _ in $(seq 240); do
        [ -s "$WORK/pg-dsn" ] && break
        kill -0 "$PG_PID" 2>/dev/null || break
        sleep 0.5
    done
    [ -s "$WORK/pg-dsn" ] || { cat "$WORK/pg.log" >&2; echo "arm64_tests.sh: the host PostgreSQL for the gallery tests did not start (log above)" >&2; exit 2; }
    GFN_EDGE_TEST_PG_DSN=$(cat "$WORK/pg-dsn")
    export GFN_EDGE_TEST_PG_DSN
fi

pids=()
pid_cpus=()
# test runs still going (not `jobs`: the PostgreSQL server above is a background job too)
running() {
    local n=0 p
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && n=$((n + 1)); done
    echo "$n"
}
TAG=${NAME:+-$NAME}
# one CPU's reports, named once: junit-<suite>-<cpu>[-NAME].xml and pytest-<suite>-<cpu>[-NAME].log
junit_of() { echo "$WORK/junit-$SUITE-$1$TAG.xml"; }
log_of() { echo "$WORK/pytest-$SUITE-$1$TAG.log"; }
for k in "${!cpu_list[@]}"; do
    cpu=${cpu_list[$k]}
    args=("$@")
    if [ -n "${SHARD:-}" ]; then
        mapfile -t args <"$WORK/plan-$k.txt"
        [ "${#args[@]}" -gt 0 ] || continue
    fi
    while [ "$(running)" -ge "$JOBS" ]; do sleep 2; done
    (
        t0=$(date +%s)
        junit=$(junit_of "$cpu")
        log=$(log_of "$cpu")
        set +e
        GFN_EDGE_TEST_BUNDLES=$WORK/bundles GFN_EDGE_TEST_CACHE=$WORK/cache \
            bash scripts/arm64.sh --suite "$SUITE" --cpu "$cpu" -- \
            python -m pytest -q -p no:cacheprovider --junitxml="$junit" "${args[@]}" >"$log" 2>&1
        code=$?
        set -e
        if [ "$code" = 0 ]; then
            python3 "$ROOT/scripts/junit_check.py" "$junit" >>"$log" 2>&1 || code=1
        fi
        stamp "$SUITE aarch64 $cpu${NAME:+ $NAME}" $(( $(date +%s) - t0 )) "exit $code ($(tail -1 "$log"))"
        exit "$code"
    ) &
    pids+=($!)
    pid_cpus+=("$cpu")
done
status=0
for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
        status=1
        echo "arm64_tests.sh: ${pid_cpus[$i]} failed; last lines of $(log_of "${pid_cpus[$i]}"):" >&2
        tail -40 "$(log_of "${pid_cpus[$i]}")" >&2
    fi
done
cat "$TIMINGS" >&2
exit "$status"

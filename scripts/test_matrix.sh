#!/usr/bin/env bash
# Run the test suite under the four CPU settings whose floating-point rounding differs, one after another:
#   default                  this CPU's own kernels, 1 torch thread in the test process (tests/conftest.py)
#   ONEDNN_MAX_CPU_ISA=AVX2  oneDNN limited to AVX2 kernels (other blocking and vector width than AVX-512 / AMX)
#   OMP_NUM_THREADS=1        one thread, in the test process and in the CLI subprocesses the tests start
#   OMP_NUM_THREADS=2        two threads (another split of each reduction)
# tests/conftest.py sets torch.set_num_threads from SEMCOLLAB_TEST_THREADS (set here with OMP_NUM_THREADS).
# Usage: scripts/test_matrix.sh [pytest arguments], e.g. scripts/test_matrix.sh tests/lm -x
# Prints one summary line per setting; the full output of a failing setting goes to a log file named there.
# Exit status: 0 when every setting passed, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
logs=$(mktemp -d "${TMPDIR:-/tmp}/semcollab-matrix.XXXXXX")
settings=("default" "ONEDNN_MAX_CPU_ISA=AVX2" "OMP_NUM_THREADS=1" "OMP_NUM_THREADS=2")
failed=0
for setting in "${settings[@]}"; do
    envs=(-u ONEDNN_MAX_CPU_ISA -u OMP_NUM_THREADS -u SEMCOLLAB_TEST_THREADS)
    case "$setting" in
        default) ;;
        OMP_NUM_THREADS=*) envs+=("$setting" "SEMCOLLAB_TEST_THREADS=${setting#*=}") ;;
        *) envs+=("$setting") ;;
    esac
    log="$logs/${setting//[^A-Za-z0-9_]/_}.log"
    start=$SECONDS
    env "${envs[@]}" "$PY" -m pytest -p no:cacheprovider "$@" >"$log" 2>&1
    rc=$?
    took=$((SECONDS - start))
    summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed|error|skipped|deselected)|no tests ran' "$log" | tail -1 | tr -d '=')
    summary=${summary:-"no pytest summary line"}
    if [ "$rc" -eq 0 ]; then
        printf '%-26s PASS  %s (%ss)\n' "$setting" "$(echo "$summary" | xargs)" "$took"
    else
        failed=1
        printf '%-26s FAIL  %s (%ss, exit %s; log %s)\n' "$setting" "$(echo "$summary" | xargs)" "$took" "$rc" "$log"
        grep -E '^(FAILED|ERROR) ' "$log" | head -20 | sed 's/^/    /'
    fi
done
[ "$failed" -eq 0 ] && rm -rf "$logs"
exit "$failed"

#!/usr/bin/env bash
# Every real-shape benchmark in one unattended run on one GPU, then one table of ratios, images/s and peak
# memory (random weights: only the costs mean anything).
#
#   bash bench/gpu_suite.sh                  # real shapes on cuda (one H100: about 8 minutes)
#   bash bench/gpu_suite.sh --dry-run        # the same scripts at tiny shapes on the CPU (CI runs this)
#   bash bench/gpu_suite.sh --out FILE       # keep the JSONL rows (default: a temporary file)
#
# Exits non-zero when any bench failed; the table still shows the ones that ran.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
DRY=0
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --out) OUT="$2"; shift ;;
        *) echo "gpu_suite.sh: unknown argument '$1' (use --dry-run or --out FILE)" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$OUT" ] || OUT=$(mktemp --suffix=.jsonl)
: >"$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
failed=0

run() {  # run NAME SECONDS ARGS...: one bench with a time limit; a failure is counted, not fatal
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*"
    local start=$SECONDS
    if ! timeout "$limit" "$PY" "$@" --json "$OUT"; then
        echo "FAILED: $name (exit or timeout after $((SECONDS - start)) s)"
        failed=$((failed + 1))
    fi
    echo "   ($((SECONDS - start)) s)"
}

if [ "$DRY" = 1 ]; then
    run geneval_scoring 300 bench/geneval_scoring.py --size tiny --images 4 --batch-size 2 --image-size 64 --device cpu
    run bagel_generation 300 bench/bagel_batching.py --shapes tiny --size 32 --steps 3 --batch 2 --trials 1
    run dvreward_verify 300 bench/dvreward_verify.py --configs tiny --questions 4 --repeats 1
    run flow_grpo_step 300 bench/grpo_step.py --configs tiny --steps 1 --batch 4 --num-steps 4 --device cpu
    if [ -f bench/alphagrpo_step.py ]; then
        run alphagrpo_step 300 bench/alphagrpo_step.py --shapes tiny --steps 1 --device cpu
    fi
else
    run geneval_scoring 240 bench/geneval_scoring.py --size real --images 32 --batch-size 8 --device cuda
    run bagel_generation 420 bench/bagel_batching.py --shapes 7b --device cuda --dtype bf16 --size 512 --steps 10 --batch 8 --trials 1
    run dvreward_verify 240 bench/dvreward_verify.py --configs 7b --questions 16 --repeats 2 --device cuda --dtype bf16 --threads 8
    run flow_grpo_step 300 bench/grpo_step.py --configs sd35m --steps 1 --batch 4 --device cuda
    if [ -f bench/alphagrpo_step.py ]; then
        run alphagrpo_step 420 bench/alphagrpo_step.py --shapes 7b --steps 1 --device cuda
    fi
fi

echo
"$PY" bench/suite_results.py "$OUT" || failed=$((failed + 1))
echo "rows: $OUT"
[ "$failed" -eq 0 ] || { echo "$failed bench(es) failed"; exit 1; }

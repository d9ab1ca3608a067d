#!/usr/bin/env bash
# The vllm:/sglang: judges and `evalkit judge serve` on a GPU machine where vllm and/or sglang are installed:
# P(yes) of each engine (in process, and served over HTTP) against the hf: judge on the same weights, the
# speed-up of one batched call per image over one request per question, AlphaGRPO's top-5 requests, and a
# clean stop on SIGINT. CI cannot run this (no GPU, engines not installed); a person with a GPU runs it:
#
#   MODEL=/models/Qwen2.5-VL-7B-Instruct bash bench/judge_engines_gpu.sh     # a real judge folder
#   bash bench/judge_engines_gpu.sh                                         # tiny random Qwen2-VL (fp32)
#
# The tiny model's 16-wide attention heads may be refused by an engine's kernels; a real VLM is the check
# that counts. Exits non-zero when a step fails or P(yes) differs from hf: by more than TOL (default 0.05).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
MODEL=${MODEL:-tiny}
TOL=${TOL:-0.05}
OUT=$(mktemp -d)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# A random model's yes/no tokens are rarely among the top 20: the tiny one gets its whole vocabulary.
if [ "$MODEL" = tiny ]; then
    ref_dtype=float32; engine=(--engine-dtype float32 --top-logprobs 512)
else
    ref_dtype=bfloat16; engine=()
fi

files=("$OUT/reference.json")
"$PY" bench/judge_engines_gpu.py reference --model "$MODEL" --dtype "$ref_dtype" --out "$OUT/reference.json" || exit 1
for backend in vllm sglang; do
    if ! "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$backend') is None)"; then
        echo "== $backend: not installed, skipped (pip install $backend)"
        continue
    fi
    for step in inproc served; do
        echo "== $backend $step"
        out="$OUT/$backend-$step.json"
        if ! timeout 1200 "$PY" bench/judge_engines_gpu.py "$step" --backend "$backend" --model "$MODEL" "${engine[@]}" --out "$out"; then
            echo "{\"step\": \"$backend: $step\", \"error\": \"exited non-zero or timed out\"}" >"$out"
        fi
        files+=("$out")
    done
done
echo
"$PY" bench/judge_engines_gpu.py compare "${files[@]}" --tol "$TOL"
status=$?
echo "rows: $OUT"
exit $status

#!/usr/bin/env bash
# The CUDA tests and figures in one run, for a machine with a GPU:
#
#     BARK_SHARED=/path/to/shared bash bench/cuda.sh      # logs and JSON under $OUT, else bench-cuda/
#
# It runs from the checkout without installing it (PYTHONPATH), in the Python it finds ($PYTHON,
# else python3), which needs torch with CUDA, transformers (the comparison and the test oracle),
# tokenizers, typer, rich, safetensors, huggingface_hub, soundfile and pytest. BARK_SHARED names
# the reference data the tests read (../shared beside a checkout; carry a copy to a machine the
# checkout travels to alone). Every step runs even if one before it failed; the exit code is
# the number of failed steps. Each figure's JSON report lands beside the log.
set -u
cd "$(dirname "$0")/.."
out=${OUT:-bench-cuda}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
failed=0

step() {
    echo "== $*" | tee -a "$out/log.txt"
    "$@" 2>&1 | tee -a "$out/log.txt"
    [ "${PIPESTATUS[0]}" -eq 0 ] || failed=$((failed + 1))
}

# summary FILE: one line per implementation and token count of a JSON report.
summary() {
    "$py" - "$1" <<'EOF'
import json, sys
for result in json.load(open(sys.argv[1]))["results"]:
    for side in ("bark_cli", "transformers"):
        run = result.get(side)
        if run:
            cuda = (run["cuda_peak_bytes"] or 0) / 2**30
            print(f"  {side}: {result['tokens']} tokens x {run['batch_size']}: {run['seconds']['total']:.2f} s, "
                  f"RTF {run['real_time_factor']:.3f}, CUDA peak {cuda:.2f} GiB")
EOF
}

# report NAME COMMAND...: the command's JSON report in NAME.json, its summary in the log.
report() {
    local name=$1
    shift
    echo "== $* --json" | tee -a "$out/log.txt"
    if "$@" --json > "$out/$name.json" 2>> "$out/log.txt"; then
        summary "$out/$name.json" 2>&1 | tee -a "$out/log.txt"
    else
        failed=$((failed + 1))
    fi
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$out/log.txt"
# The CUDA tests, and the CPU-side device tests beside them.
step "$py" -m pytest -q -rs tests/test_cuda.py tests/test_devices.py
# bark (large), float16, one utterance of 100 semantic tokens (2 s of audio): eager, with CUDA
# graphs, and with offload (the peak GPU memory).
bench="$py -m bark_cli bench --config bark --device cuda --dtype float16"
report bark-fp16 $bench --tokens 100
report bark-fp16-graphs $bench --tokens 100 --cuda-graphs
report bark-fp16-offload $bench --tokens 100 --offload
report bark-fp16-offload-graphs $bench --tokens 100 --offload --cuda-graphs
# Batch 16 against transformers generating the same batch in one call, float16 both.
report bark-fp16-batch16 "$py" bench/compare.py --config bark --device cuda --dtype float16 --tokens 150 \
    --batch-size 16 --cuda-graphs --transformers-batched
echo "failed steps: $failed" | tee -a "$out/log.txt"
exit "$failed"

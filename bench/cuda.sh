#!/usr/bin/env bash
# Issue 5's CUDA checks and figures in one run, for a machine with a GPU:
#
#     BARK_SHARED=/path/to/shared bash bench/cuda.sh      # logs and JSON under $OUT, else bench-cuda/
#
# It runs from the checkout without installing it (PYTHONPATH), in the Python it finds ($PYTHON,
# else python3), which needs torch with CUDA, transformers (the comparison and the test oracle),
# tokenizers, typer, rich, safetensors, huggingface_hub, soundfile and pytest. BARK_SHARED names
# the reference data the tests read (../shared beside a checkout; carry a copy to a machine the
# checkout travels to alone). Every step runs even if one before it failed; the exit code is
# the number of failed steps.
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

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$out/log.txt"
# The CUDA tests, and the CPU-side device tests beside them.
step "$py" -m pytest -q -rs tests/test_cuda.py tests/test_devices.py
# bark (large), float16, one utterance of 100 semantic tokens (2 s of audio): eager, with CUDA
# graphs, and with offload (the peak GPU memory).
bench="$py bench/run.py --config bark --device cuda --dtype float16 --quiet"
step $bench --tokens 100 --json "$out/bark-fp16.json"
step $bench --tokens 100 --cuda-graphs --json "$out/bark-fp16-graphs.json"
step $bench --tokens 100 --offload --json "$out/bark-fp16-offload.json"
step $bench --tokens 100 --offload --cuda-graphs --json "$out/bark-fp16-offload-graphs.json"
# Batch 16 against transformers generating the same batch in one call, float16 both.
step $bench --tokens 150 --batch-size 16 --cuda-graphs --compare-transformers --transformers-batched \
    --json "$out/bark-fp16-batch16.json"
echo "failed steps: $failed" | tee -a "$out/log.txt"
exit "$failed"

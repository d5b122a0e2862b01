#!/usr/bin/env bash
# The CUDA tests and every GPU figure docs/guide/performance.md gives, in one run, for a machine with a GPU:
#
#     BARK_SHARED=/path/to/shared bash bench/cuda.sh      # logs and JSON under $OUT, else bench-cuda/
#
# It runs from the checkout without installing it (PYTHONPATH), in the Python it finds ($PYTHON,
# else python3), which needs torch with CUDA, transformers (the comparison and the test oracle),
# tokenizers, typer, rich, safetensors, huggingface_hub, soundfile, pytest, and for the server
# fastapi, uvicorn, httpx and prometheus-client. BARK_SHARED names
# the reference data the tests read (../shared beside a checkout; carry a copy to a machine the
# checkout travels to alone). Every step runs even if one before it failed; the exit code is
# the number of failed steps. A test step whose tests all skipped counts as failed: on a GPU
# machine that means the GPU went unseen. Each figure's JSON report lands beside the log.
#
# Figures (bark, the large size, random weights, float16, each `bark bench` figure the median of
# 3 runs): one utterance of 100 semantic tokens eager, with CUDA graphs, with offload, with
# offload and graphs, eager with cuDNN attention; the graphed utterance in bfloat16 and at
# bark-small size; a batch of 16 at 150 tokens with graphs against transformers generating the
# same batch in one call, and bark-cli's eager batch of 16 beside them; the peak GPU memory of
# each; each decode step against its memory floor. bench/cuda_steps.py: kernels per graphed step
# (a profiler trace of one replay), ms per step with its sampling, cold start (load and every
# capture), and a voice-prompt run (coarse positions up to about 950). bench/stream.py: time to
# first audio of a 10-segment text. bench/serve.py: `bark serve` with 16 concurrent clients
# against the same requests one at a time, and 8 clients of 5-segment texts (time to first byte),
# each against its in-process yardsticks. Last, bench/cuda_report.py compares the figures with
# bench/cuda-baseline.json (the last recorded H200 figures) and fails where one regressed by
# more than 25%; the run's figures land in $out/figures.json, to commit as the next baseline.
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

# tests NAME FILES...: pytest on FILES; failed if pytest fails, collects nothing (exit 5) or
# skips every test it collected.
tests() {
    local name=$1
    shift
    echo "== pytest $*" | tee -a "$out/log.txt"
    "$py" -m pytest -q -rs -p no:cacheprovider --junitxml="$out/$name.xml" "$@" 2>&1 | tee -a "$out/log.txt"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -eq 0 ]; then
        "$py" - "$out/$name.xml" 2>&1 <<'EOF' | tee -a "$out/log.txt"
import sys
import xml.etree.ElementTree as ET
tests = skipped = 0
for suite in ET.parse(sys.argv[1]).getroot().iter("testsuite"):
    tests += int(suite.get("tests", 0))
    skipped += int(suite.get("skipped", 0))
print(f"{tests} collected, {skipped} skipped")
sys.exit(1 if tests == 0 or skipped == tests else 0)
EOF
        [ "${PIPESTATUS[0]}" -eq 0 ] || rc="0, but every test skipped"
    fi
    [ "$rc" = 0 ] || { echo "step failed: $name (pytest exit $rc)" | tee -a "$out/log.txt"; failed=$((failed + 1)); }
}

# summary FILE: the SDPA kernels, then one line per implementation and token count of a JSON report.
summary() {
    "$py" - "$1" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
kernels = report.get("model", {}).get("sdpa_backends")
if kernels:
    print(f"  SDPA kernel: prefill {kernels['prefill']}, decode step {kernels['step']}")
for result in report["results"]:
    for side in ("bark_cli", "transformers"):
        run = result.get(side)
        if run:
            cuda = (run["cuda_peak_bytes"] or 0) / 2**30
            print(f"  {side} ({run['dtype']}): {result['tokens']} tokens x {run['batch_size']}: "
                  f"{run['seconds']['total']:.2f} s, RTF {run['real_time_factor']:.3f}, CUDA peak {cuda:.2f} GiB")
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
        echo "step failed: $name" | tee -a "$out/log.txt"
        failed=$((failed + 1))
    fi
}

nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv 2>&1 | tee -a "$out/log.txt"
# The CUDA tests (all skipped = the GPU went unseen = failed), then the CPU-side device and
# graph tests beside them.
tests cuda tests/test_cuda.py
tests devices tests/test_devices.py tests/test_graphs.py tests/test_decode_step.py tests/test_codec_batch.py
# bark (large), float16, one utterance of 100 semantic tokens (2 s of audio).
bench="$py -m bark_cli bench --config bark --device cuda --dtype float16 --quiet --repeats 3"
report bark-fp16 $bench --tokens 100 --no-cuda-graphs
report bark-fp16-graphs $bench --tokens 100 --cuda-graphs
report bark-fp16-offload $bench --tokens 100 --offload --no-cuda-graphs
report bark-fp16-offload-graphs $bench --tokens 100 --offload --cuda-graphs
# The same eager run with cuDNN's attention allowed (PyTorch's own choice, `--attention sdpa`),
# which `auto` leaves out on CUDA.
report bark-fp16-sdpa $bench --tokens 100 --attention sdpa --no-cuda-graphs
# Batch 16: bark-cli eager, then bark-cli with graphs against transformers generating the same
# batch in one call, float16 both.
report bark-fp16-batch16-eager $bench --tokens 150 --batch-size 16 --decode-steps 0 --no-cuda-graphs
report bark-fp16-batch16 "$py" bench/compare.py --config bark --device cuda --dtype float16 --tokens 150 \
    --batch-size 16 --cuda-graphs --transformers-batched --decode-steps 0 --quiet
# The graphed utterance in bfloat16 and at bark-small size.
report bark-bf16-graphs "$py" -m bark_cli bench --config bark --device cuda --dtype bfloat16 --quiet --repeats 3 \
    --tokens 100 --cuda-graphs
report bark-small-fp16-graphs "$py" -m bark_cli bench --config bark-small --device cuda --dtype float16 --quiet \
    --repeats 3 --tokens 100 --cuda-graphs
# Cold start, kernels per graphed step, ms per step with its sampling, a voice-prompt run; then
# time to first audio of a 10-segment text with graphs.
step "$py" bench/cuda_steps.py --figures "$out/steps.figures.json"
step "$py" bench/stream.py --size bark --device cuda --tokens 100 --batch-size 4 --figures "$out/stream.figures.json"
# The server: 16 concurrent short requests, then 8 clients sending 5-segment texts (each bounded:
# a server that hangs fails its step and leaves the run its time).
step timeout 300 "$py" bench/serve.py --size bark --device cuda --dtype float16 --clients 16 --tokens 100 \
    --turns 1 --figures "$out/serve16.figures.json"
step timeout 300 "$py" bench/serve.py --size bark --device cuda --dtype float16 --clients 8 --segments 5 \
    --tokens 100 --turns 1 --figures "$out/serve8x5.figures.json"
# Every figure against the baseline: fails where one regressed by more than 25%.
step "$py" bench/cuda_report.py "$out" --baseline bench/cuda-baseline.json --write "$out/figures.json"
echo "failed steps: $failed" | tee -a "$out/log.txt"
exit "$failed"

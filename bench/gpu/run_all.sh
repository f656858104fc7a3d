#!/usr/bin/env bash
# On the GPU machine: the benchmark runs behind docs/BENCHMARKS.md's CUDA sections, written under
# OUT. Parts: forward (the recipe's grid, FP16 then FP32, gptrt-cuda beside PyTorch eager and
# torch.compile) and generation (end-to-end greedy generation and the decode-step table, FP16 and
# FP32, beside Hugging Face generate). Model: `gptrt make-model --arch distilgpt2` (random
# weights, real architecture) exported by scripts/export_onnx.py.
# Usage: bench/gpu/run_all.sh OUT [forward] [generation]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: run_all.sh OUT [forward] [generation]}
shift
parts=${*:-forward generation}
mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
gptrt=build/release/gptrt
model=${GPTRT_BENCH_MODEL:-/tmp/gptrt-distilgpt2}
[ -f "$model/config.json" ] || "$gptrt" make-model --arch distilgpt2 --out "$model" >/dev/null
[ -f "$model.onnx" ] || python3 scripts/export_onnx.py --hf "$model" --out "$model.onnx" >"$out/export.log" 2>&1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
"$gptrt" --version > "$out/version.txt"
common=(--onnx "$model.onnx" --hf "$model" --backend cuda --device cuda --min-runs 50 --min-seconds 1)
for part in $parts; do
  for p in fp16 fp32; do
    case $part in
      forward)
        "$gptrt" bench "${common[@]}" --precision $p --frameworks gptrt,pytorch,torch.compile \
          --out "$out/forward-$p" > "$out/forward-$p.log" 2>&1 ;;
      generation)
        "$gptrt" bench "${common[@]}" --precision $p --frameworks gptrt,pytorch --shapes 1x12 \
          --generate 1x32,8x32 --decode 1,8,64 --out "$out/generation-$p" \
          > "$out/generation-$p.log" 2>&1 ;;
    esac
    echo "$part $p: exit $? ($(date -u +%H:%M) UTC)"
  done
done

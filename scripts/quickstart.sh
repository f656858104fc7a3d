#!/usr/bin/env bash
# The README's first command: installs what is missing, builds gptrt in Release, then runs the
# main job on a DistilGPT2-size model: synthesise it with `gptrt make-model` (real architecture,
# seeded random weights; cached in build/models), build a CPU engine with the recipe's profile
# (min 1x12, opt 8x12, max 16x12), and print the recipe's Tables 1 and 2 for gptrt and for every
# peer the harness finds installed (ONNX Runtime and PyTorch need torch + transformers to
# export and run the model; without them their rows say so).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install_deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target gptrt_cli

gptrt=build/release/gptrt
model=build/models/distilgpt2
engine=build/distilgpt2.engine
"$gptrt" --version
echo
if [ ! -f "$model/model.safetensors" ]; then
  echo "== gptrt make-model --arch distilgpt2 --out $model (once; cached)"
  "$gptrt" make-model --arch distilgpt2 --seed 0 --out "$model"
fi
echo
echo "== gptrt exec --hf=$model --saveEngine=$engine (the recipe's profile)"
"$gptrt" exec --hf="$model" --saveEngine="$engine" \
  --minShapes=input_ids:1x12,attention_mask:1x12 \
  --optShapes=input_ids:8x12,attention_mask:8x12 \
  --maxShapes=input_ids:16x12,attention_mask:16x12 --skipInference
echo
echo "== gptrt exec --loadEngine=$engine --shapes=input_ids:1x12,attention_mask:1x12"
"$gptrt" exec --loadEngine="$engine" --shapes=input_ids:1x12,attention_mask:1x12 --duration=1
echo
echo "== gptrt bench --hf=$model: the recipe's Tables 1 and 2 (results in build/bench-quickstart)"
"$gptrt" bench --hf="$model" --out=build/bench-quickstart --min-runs=10 --min-seconds=1

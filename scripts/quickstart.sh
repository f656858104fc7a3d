#!/usr/bin/env bash
# The README's first command: installs what is missing, builds gptrt in Release, then runs the
# recipe's job on the bundled model: build an engine from the ONNX export with the recipe's
# profile (1x12 / 8x12 / 16x12) and print trtexec's performance summary for each shape.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install_deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target gptrt_cli

gptrt=build/release/gptrt
model=tests/data/gpt2-tiny/legacy-opset17.onnx
engine=build/gpt2-tiny.engine
"$gptrt" --version
echo
echo "== gptrt exec --onnx=$model --saveEngine=$engine (the recipe's profile)"
"$gptrt" exec --onnx="$model" --saveEngine="$engine" \
  --minShapes=input_ids:1x12,attention_mask:1x12 \
  --optShapes=input_ids:8x12,attention_mask:8x12 \
  --maxShapes=input_ids:16x12,attention_mask:16x12 --skipInference
for shape in 1x12 8x12 16x12; do
  echo
  echo "== gptrt exec --loadEngine=$engine --shapes=input_ids:$shape,attention_mask:$shape"
  "$gptrt" exec --loadEngine="$engine" --shapes=input_ids:$shape,attention_mask:$shape --duration=1
done

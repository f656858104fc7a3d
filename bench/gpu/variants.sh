#!/usr/bin/env bash
# On a GPU machine: GPU compute time (median, CUDA graphs, no transfers) of the CUDA backend's
# variants side by side in one run, DistilGPT2 size (random weights), the recipe's shapes:
# skinny GEMM + programmatic dependent launch (default), without PDL, cuBLASLt only.
# Usage: bench/gpu/variants.sh OUT_DIR [precision flags, default --fp16]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: variants.sh OUT_DIR [--fp16|--bf16|...]}
shift
flags=${*:---fp16}
mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
gptrt=build/release/gptrt
model=${GPTRT_BENCH_MODEL:-/tmp/gptrt-distilgpt2}
[ -f "$model/config.json" ] || "$gptrt" make-model --arch distilgpt2 --out "$model" >/dev/null
"$gptrt" exec --hf "$model" --backend cuda $flags --maxBatch 64 --maxSeqLen 128 \
  --saveEngine "$out/engine" --skipInference >/dev/null
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
printf '%-22s %-8s %s\n' variant shape "GPU compute median (ms)" | tee "$out/variants.txt"
for shape in 1x12 8x12 16x12 1x1 8x1 64x1; do
  for variant in default no-pdl cublaslt; do
    env=()
    [ "$variant" = no-pdl ] && env=(GPTRT_CUDA_PDL=0)
    [ "$variant" = cublaslt ] && env=(GPTRT_CUDA_GEMM=cublaslt)
    line=$(env "${env[@]}" "$gptrt" exec --loadEngine "$out/engine" \
      --shapes "input_ids:$shape,attention_mask:$shape" --useCudaGraph --noDataTransfers \
      --duration 1 --warmUp 200 2>&1 | grep "GPU Compute Time" || true)
    median=$(sed -n 's/.*median = \([0-9.]*\) ms.*/\1/p' <<<"$line")
    printf '%-22s %-8s %s\n' "$variant" "$shape" "${median:-failed: $line}" | tee -a "$out/variants.txt"
  done
done
# Where the time goes: GPU time per kernel kind (kernels one by one, no graph).
for shape in ${GPTRT_PROFILE_SHAPES:-1x12 64x1}; do
  for variant in default cublaslt; do
    env=()
    [ "$variant" = cublaslt ] && env=(GPTRT_CUDA_GEMM=cublaslt)
    echo "== $variant $shape" >> "$out/profile.txt"
    env "${env[@]}" "$gptrt" exec --loadEngine "$out/engine" \
      --shapes "input_ids:$shape,attention_mask:$shape" --duration 0.5 --dumpProfile 2>&1 |
      sed -n '/=== Profile/,$p' >> "$out/profile.txt"
  done
done

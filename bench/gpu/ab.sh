#!/usr/bin/env bash
# Two gptrt binaries (say, before and after a change) side by side in one run, interleaved
# A B A B so that drift hits both: compute median per shape (`exec`; on the GPU with CUDA graphs
# and no transfers) and decode ms per token (`generate`, 12-token prompt, 64 new tokens, greedy).
# DistilGPT2 size, random weights. Prints lines "precision shape|decode bN A|B value".
# Each `generate` is one call in a fresh process, so its decode ms per token includes that call's
# setup (graph capture, cuBLASLt plans): at batch 64 on the H100, 0.64 ms per token over 64 new
# tokens against 0.30 ms steady (`gptrt bench --decode`). Compare A with B only.
# Usage: bench/gpu/ab.sh OUT_DIR BINARY_A BINARY_B
# Environment: BACKEND (cuda, the default, or cpu), THREADS (cpu; default 2), PRECS (default
# "fp16 fp32"; bf16 too), SHAPES (default "1x12 1x1 8x1"), DECODES (batches, default "1 8"; empty
# for none).
set -uo pipefail
out=${1:?usage: ab.sh OUT_DIR BINARY_A BINARY_B}
A=${2:?usage: ab.sh OUT_DIR BINARY_A BINARY_B}
B=${3:?usage: ab.sh OUT_DIR BINARY_A BINARY_B}
mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
model=${GPTRT_BENCH_MODEL:-/tmp/gptrt-distilgpt2}
[ -f "$model/config.json" ] || "$A" make-model --arch distilgpt2 --out "$model" >/dev/null
ids=$(python3 -c "print(','.join(str(i * 37 % 50000 + 1) for i in range(12)))")
backend=${BACKEND:-cuda}
run_flags="--useCudaGraph --noDataTransfers"
[ "$backend" = cpu ] && run_flags="--threads ${THREADS:-2}"
for p in ${PRECS:-fp16 fp32}; do
  flag=
  [ "$p" = fp32 ] || flag=--$p
  for x in A B; do
    "${!x}" exec --hf "$model" --backend "$backend" $flag --maxBatch 64 --maxSeqLen 128 \
      --saveEngine "$out/engine-$p-$x" --skipInference >/dev/null
  done
  for s in ${SHAPES:-1x12 1x1 8x1}; do
    for x in A B A B; do
      m=$("${!x}" exec --loadEngine "$out/engine-$p-$x" --shapes "input_ids:$s,attention_mask:$s" \
        $run_flags --duration 1 --warmUp 200 2>&1 |
        sed -n 's/.*] \(GPU \)\{0,1\}Compute Time: .*median = \([0-9.]*\) ms.*/\2/p')
      echo "$p $s $x ${m:-failed}"
    done
  done
  for b in ${DECODES-1 8}; do
    args=()
    for _ in $(seq "$b"); do args+=(--prompt-ids "$ids"); done
    for x in A B A B; do
      d=$("${!x}" generate --loadEngine "$out/engine-$p-$x" "${args[@]}" --max-new-tokens 64 \
        $([ "$backend" = cpu ] && echo --threads "${THREADS:-2}") \
        --format json 2>/dev/null |
        python3 -c "import json, sys; print(json.load(sys.stdin)['timings']['decode_ms_per_token'])")
      echo "$p decode b$b $x ${d:-failed}"
    done
  done
done

#!/usr/bin/env bash
# The runs behind docs/BENCHMARKS.md's serving tables, written under OUT: `gptrt serve` on BACKEND
# driven over HTTP by bench/serve/load.py (streaming, 12-token prompts, fixed concurrency), beside
# the offline numbers it is measured against in the same run: the decode step at the largest
# concurrency and the 12-token prefill (`gptrt bench`). On the CPU, llama.cpp's server on the
# same model (GGUF F32 made with the converter llama.cpp ships) runs next, with the same load.
# Model: `gptrt make-model --arch distilgpt2` (random weights, real architecture).
# Usage: bench/serve/run.sh OUT cpu|cuda [CONCURRENCY (default 1,8,32 on cpu, 1,8,32,64 on cuda)]
# Environment: THREADS (cpu, default 2), MAX_TOKENS (default 64), RATE (requests/s of the Poisson
# run, default 8 on cpu, 200 on cuda), PRECISION (default fp16 on cuda,
# fp32 on cpu), PEERS (cpu, default llama-server; "" for none), LLAMA_SERVER (its binary),
# PER_CLIENT (requests each client sends in turn, default 4 on cpu, 16 on cuda: a level of 64
# streams then lasts long enough to leave its ramps behind), SERVE_FLAGS (more `gptrt serve` flags).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: run.sh OUT cpu|cuda [CONCURRENCY]}
backend=${2:?usage: run.sh OUT cpu|cuda [CONCURRENCY]}
mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
gptrt=${GPTRT:-build/release/gptrt}
model=${GPTRT_BENCH_MODEL:-/tmp/gptrt-distilgpt2}
max_tokens=${MAX_TOKENS:-64}
threads=${THREADS:-2}
if [ "$backend" = cuda ]; then
  conc=${3:-1,8,32,64}; precision=${PRECISION:-fp16}; peers=""; rate=${RATE:-200}
  per_client=${PER_CLIENT:-16}
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/machine.txt"
else
  conc=${3:-1,8,32}; precision=${PRECISION:-fp32}; peers=${PEERS-llama-server}; rate=${RATE:-8}
  per_client=${PER_CLIENT:-4}
  grep -m1 "model name" /proc/cpuinfo | sed 's/.*: //' > "$out/machine.txt"
  echo "threads: $threads" >> "$out/machine.txt"
fi
most=${conc##*,}
"$gptrt" --version > "$out/version.txt"
[ -f "$model/config.json" ] || "$gptrt" make-model --arch distilgpt2 --out "$model" >/dev/null
[ -f "$model.onnx" ] || python3 scripts/export_onnx.py --hf "$model" --out "$model.onnx" >"$out/export.log" 2>&1

# Offline, in the same run: the 12-token prefill and the decode step at 1 and `most` rows.
"$gptrt" bench --onnx "$model.onnx" --hf "$model" --frameworks gptrt --backend "$backend" \
  --precision "$precision" --threads "$threads" --shapes 1x12 --decode "1,$most" \
  --min-runs 20 --min-seconds 1 --out "$out/offline" > "$out/offline.log" 2>&1

wait_ready() {  # URL PID [PATH]: until URL/PATH answers (gptrt's /health: built and warm)
  for _ in $(seq 600); do
    python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
      "$1${3:-/health}" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.5
  done
  return 1
}

# gptrt serve.
flags=(--hf "$model" --backend "$backend" --slots "$most" --max-queue 1024 --port 0
       --threads "$threads")
[ "$precision" = fp32 ] || flags+=("--$precision")
read -ra more <<< "${SERVE_FLAGS:-}"
flags+=("${more[@]}")
"$gptrt" serve "${flags[@]}" > "$out/gptrt-serve.port" 2> "$out/gptrt-serve.log" &
pid=$!
for _ in $(seq 600); do [ -s "$out/gptrt-serve.port" ] && break; sleep 0.5; done
url="http://127.0.0.1:$(head -1 "$out/gptrt-serve.port")"
wait_ready "$url" "$pid"
load() {  # URL NAME: the concurrency levels, then Poisson arrivals at RATE requests/s
  python3 bench/serve/load.py --url "$1" --concurrency "$conc" --prompt-tokens 12 \
    --max-tokens "$max_tokens" --per-client "$per_client" --json "$out/$2.json" | tee "$out/$2.txt"
  python3 bench/serve/load.py --url "$1" --rate "$rate" --requests $((4 * most)) --prompt-tokens 12 \
    --max-tokens "$max_tokens" --json "$out/$2-rate.json" | tail -n +2 | tee -a "$out/$2.txt"
}
load "$url" gptrt
python3 -c "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())" \
  "$url/metrics" > "$out/gptrt-metrics.txt"
python3 - "$out/gptrt-metrics.txt" <<'PY' | tee -a "$out/gptrt.txt"
import sys
m = {l.split()[0]: float(l.split()[1]) for l in open(sys.argv[1]) if l[0] != "#" and len(l.split()) == 2}
d, p = m["gptrt_decode_step_seconds_count"], m["gptrt_prefill_step_seconds_count"]
print(f"server passes: {d:.0f} decode steps, mean {1e3 * m['gptrt_decode_step_seconds_sum'] / max(d, 1):.3f} ms; "
      f"{p:.0f} with prompt tokens, mean {1e3 * m['gptrt_prefill_step_seconds_sum'] / max(p, 1):.3f} ms; "
      f"{m['gptrt_step_sequences_total'] / max(d + p, 1):.1f} sequences a pass")
PY
kill -TERM "$pid"; wait "$pid" || true

# llama.cpp's server (CPU) on the same model converted to GGUF F32, the same load: the C++
# `llama-server` (continuous batching over --parallel slots; LLAMA_SERVER=path, built by
# bench/serve/build_llama_server.sh from the llama.cpp that llama-cpp-python's sdist ships).
# (llama-cpp-python's own Python server is no peer here: it refuses token-id prompts and runs
# one request at a time.)
gguf="$model/model-f32.gguf"
make_gguf() {
  [ -f "$gguf" ] && return 0
  python3 bench/serve/to_gguf.py --hf "$model" --out "$gguf" > "$out/gguf.log" 2>&1
}
serve_peer() {  # NAME PORT PID: load it like gptrt, then stop it
  if wait_ready "http://127.0.0.1:$2" "$3" /v1/models; then
    load "http://127.0.0.1:$2" "$1"
  else
    echo "$1: the server did not start (see $out/$1-server.log)" | tee "$out/$1.txt"
  fi
  kill -TERM "$3" 2>/dev/null; wait "$3" || true
}
for peer in $peers; do
  port=$((20000 + RANDOM % 20000))
  case $peer in
    llama-server)
      if [ ! -x "${LLAMA_SERVER:-}" ]; then
        echo "llama-server: not built (bench/serve/build_llama_server.sh; LLAMA_SERVER=path)" | tee "$out/$peer.txt"
        continue
      fi
      make_gguf || { echo "$peer: GGUF conversion failed (see $out/gguf.log)" | tee "$out/$peer.txt"; continue; }
      "$LLAMA_SERVER" --version 2>&1 | sed 's/^/llama-server: /' >> "$out/machine.txt"
      # Each of `most` slots holds a whole request (12 + max_tokens), as gptrt's do.
      "$LLAMA_SERVER" -m "$gguf" --host 127.0.0.1 --port "$port" -t "$threads" -tb "$threads" \
        -np "$most" -c $((most * (max_tokens + 64))) -cb --no-webui > "$out/$peer-server.log" 2>&1 &
      serve_peer "$peer" "$port" $! ;;
    *) echo "unknown peer $peer (llama-server)"; exit 2 ;;
  esac
done
echo "done $(date -u +%FT%H:%MZ)" >> "$out/machine.txt"

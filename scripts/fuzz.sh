#!/usr/bin/env bash
# Builds the libFuzzer targets (in the `asan` preset's build: clang with ASan + UBSan, the library
# instrumented for the fuzzer, so the sanitized tests and the fuzz targets share one build) and
# runs each for a bounded time from seed corpora made of the test fixtures. Any crash, leak, sanitizer report,
# timeout or exception other than gptrt::Error fails the run; the input that found it is kept in
# build/fuzz/findings/<target>/ (make it a regression test).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET=60] [TARGET...]
#
# CI runs it with 20 s per target (two targets at a time) and a fixed libFuzzer seed, so a run
# repeats the same mutations; a longer local run, e.g. `FUZZ_SEED=0 scripts/fuzz.sh 600` (0: a
# random seed each run), explores further and prints each target's executions.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(json npy safetensors onnx engine tokenizer)

cmake --preset asan >/dev/null
cmake --build --preset asan --target "${targets[@]/%/_fuzz}"
# Engine seeds need a gptrt CLI: the release build's when there, else a plain one built here.
cli=build/release/gptrt
if [ ! -x "$cli" ]; then
  cmake --preset release -DGPTRT_CUDA=OFF >/dev/null
  cmake --build --preset release --target gptrt_cli
fi
out=build/fuzz/run
rm -rf "$out"
mkdir -p "$out" build/fuzz/findings
python3 tests/fuzz/make_seeds.py "$out/seeds" "$cli"

run_one() {
  local t="$1"
  rm -rf "build/fuzz/findings/$t"
  mkdir -p "$out/corpus/$t" "build/fuzz/findings/$t"
  # The seeds are read, new inputs go to corpus/ (the seeds stay as committed fixtures made them).
  "build/asan/tests/fuzz/targets/${t}_fuzz" "$out/corpus/$t" "$out/seeds/$t" \
    -seed="${FUZZ_SEED:-1}" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2560 -max_len=1200000 \
    -print_final_stats=1 -artifact_prefix="build/fuzz/findings/$t/" \
    >"$out/$t.log" 2>&1
}

jobs=$(nproc)
[ "$jobs" -ge 1 ] || jobs=1
failed=0
pids=()
names=()
for t in "${targets[@]}"; do
  run_one "$t" &
  pids+=($!)
  names+=("$t")
  if [ ${#pids[@]} -ge "$jobs" ]; then
    if ! wait "${pids[0]}"; then failed=1; echo "fuzz: ${names[0]} FOUND A FAILURE: $out/${names[0]}.log"; fi
    pids=("${pids[@]:1}")
    names=("${names[@]:1}")
  fi
done
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then failed=1; echo "fuzz: ${names[$i]} FOUND A FAILURE: $out/${names[$i]}.log"; fi
done
for t in "${targets[@]}"; do
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$out/$t.log" | awk '{print $2}' | tail -1)
  printf 'fuzz: %-12s %6s s  %10s executions  %s\n' "$t" "$seconds" "${execs:-?}" \
    "$(ls "build/fuzz/findings/$t" | wc -l) findings"
done
if [ "$failed" -ne 0 ]; then
  for t in "${targets[@]}"; do
    grep -q "ERROR\|SUMMARY\|deadly signal\|uncaught" "$out/$t.log" && { echo "== $t"; grep -B2 -A25 "ERROR\|deadly signal\|uncaught" "$out/$t.log" | head -60; }
  done
  exit 1
fi
echo "fuzz: no findings"

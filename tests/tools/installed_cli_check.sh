#!/usr/bin/env bash
# `cmake --install` gives a gptrt that runs every subcommand from its install prefix, moved
# elsewhere, from a folder outside the repository: `gptrt bench` takes its Python harness from
# PREFIX/share/gptrt. Usage: installed_cli_check.sh BUILD_DIR REPO_ROOT
set -euo pipefail
build=$(cd "${1:?usage: installed_cli_check.sh BUILD_DIR REPO_ROOT}" && pwd)
root=$(cd "${2:?}" && pwd)
tmp=$(mktemp -d)
trap 'kill "${serve_pid:-0}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/installed" >/dev/null
mv "$tmp/installed" "$tmp/moved"  # (found next to the binary, wherever the prefix went)
g="$tmp/moved/bin/gptrt"
tiny="$root/tests/data/gpt2-tiny/hf"
cd "$tmp"
"$g" --version | grep -q "^gptrt "
for cmd in exec build run inspect generate tokenize make-model export-onnx bench serve; do
  "$g" "$cmd" --help | grep -q "usage: gptrt $cmd" || { echo "gptrt $cmd --help failed"; exit 1; }
done
"$g" inspect --hf "$tiny" | grep -q "input_ids"
"$g" export-onnx --hf "$tiny" --out tiny.onnx >/dev/null
"$g" build --onnx tiny.onnx --saveEngine tiny.engine >/dev/null
"$g" run --loadEngine tiny.engine --shapes input_ids:1x4,attention_mask:1x4 --exportOutput out >/dev/null
[ -s out/logits.npy ]
"$g" exec --loadEngine tiny.engine --shapes input_ids:1x4,attention_mask:1x4 | grep -q "Latency"
"$g" generate --loadEngine tiny.engine --prompt-ids 1,2,3 --max-new-tokens 3 >/dev/null
"$g" tokenize --tokenizer "$root/tests/data/tokenizer" --text "Hello world" | grep -q "15496"
"$g" bench --hf "$tiny" --frameworks gptrt --shapes 1x4 --min-runs 1 --min-seconds 0 --out bench \
  > bench.log 2>&1 || { cat bench.log; exit 1; }
grep -q "bench harness: $tmp/moved/share/gptrt/bench" bench.log || { cat bench.log; exit 1; }
[ -s bench/results.md ]
# A GPTRT_DATA_DIR without the harness is an error that names it, not a silent fallback.
mkdir empty
if GPTRT_DATA_DIR="$tmp/empty" "$g" bench --hf "$tiny" --out bench2 > bad.log 2>&1; then
  echo "gptrt bench ran with GPTRT_DATA_DIR pointing at an empty folder"; exit 1
fi
grep -q "GPTRT_DATA_DIR=$tmp/empty holds no bench/run_peers.py" bad.log || { cat bad.log; exit 1; }
[ ! -e bench2/results.md ]
"$g" serve --hf "$tiny" --port 0 > serve.port 2> serve.log &
serve_pid=$!
for _ in $(seq 100); do [ -s serve.port ] && break; sleep 0.1; done
python3 -c "import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen('http://127.0.0.1:' + open('serve.port').read().split()[0] + '/health', timeout=1); break
    except Exception: time.sleep(0.1)
else: sys.exit('gptrt serve did not answer /health')"
kill -TERM "$serve_pid" && wait "$serve_pid"
echo "installed gptrt: every subcommand ran from $tmp/moved"

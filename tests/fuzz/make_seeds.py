#!/usr/bin/env python3
"""Seed corpora for the libFuzzer targets (tests/fuzz/targets), from the test fixtures:

    python3 tests/fuzz/make_seeds.py OUT_DIR GPTRT_CLI

OUT_DIR/<target>/ gets real files of each format (the fuzzer mutates from valid structure);
engines are built from the op-case models and the tiny GPT-2 with the gptrt CLI given.
"""
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np

out, cli = sys.argv[1], sys.argv[2]
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")


def target(name):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    return d


def put(name, file_name, data):
    with open(os.path.join(target(name), file_name), "wb") as f:
        f.write(data)


ops = sorted(os.listdir(os.path.join(root, "ops")))
# ONNX: every op case, the hostile models, the tiny GPT-2 (legacy opset 17).
for op in ops:
    shutil.copy(os.path.join(root, "ops", op, "model.onnx"), os.path.join(target("onnx"), op + ".onnx"))
for f in sorted(os.listdir(os.path.join(root, "hostile"))):
    shutil.copy(os.path.join(root, "hostile", f), os.path.join(target("onnx"), f))
shutil.copy(os.path.join(root, "gpt2-tiny", "legacy-opset17.onnx"), os.path.join(target("onnx"), "gpt2-tiny.onnx"))

# npy: the op cases' inputs and expectations (every dtype they use).
for op in ops:
    for f in sorted(os.listdir(os.path.join(root, "ops", op))):
        if f.endswith(".npy"):
            shutil.copy(os.path.join(root, "ops", op, f), os.path.join(target("npy"), op + "_" + f))

# safetensors: small files of several dtypes, one with a padded header, and the tiny GPT-2's.
def safetensors(tensors, pad=0):
    header, blob = {}, b""
    for name, a in tensors.items():
        dt = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("int64"): "I64",
              np.dtype("int32"): "I32", np.dtype("uint8"): "U8"}[a.dtype]
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [len(blob), len(blob) + a.nbytes]}
        blob += a.tobytes()
    h = json.dumps(header).encode() + b" " * pad
    return struct.pack("<Q", len(h)) + h + blob


rng = np.random.default_rng(0)
put("safetensors", "small.safetensors", safetensors({"w": rng.standard_normal((4, 3)).astype(np.float32),
                                                     "b": np.arange(3, dtype=np.int64)}))
put("safetensors", "padded.safetensors", safetensors({"h": np.ones((5,), np.float16), "e": np.zeros((0, 2), np.float32)}, pad=3))
shutil.copy(os.path.join(root, "gpt2-tiny", "hf", "model.safetensors"), os.path.join(target("safetensors"), "gpt2-tiny.safetensors"))

# JSON: configs, goldens, and small documents with every kind of value.
for f in ["gpt2-tiny/hf/config.json", "gpt2-tiny/hf/generation_config.json",
          "tokenizer/gpt2_tokenizer_goldens.json", "tokenizer/extra_goldens.json"]:
    shutil.copy(os.path.join(root, f), os.path.join(target("json"), os.path.basename(f)))
put("json", "kinds.json", b'{"a": [1, -2, 3.5e10, true, null, "x\\u00e9\\ud83d\\ude42"], "b": {"c": {}}}')

# Tokenizer: mode byte 0 + a small tokenizer.json, 1 + text, 2 + token ids.
vocab = {}
byte_chars = [chr(c) for c in range(33, 127)] + [chr(c) for c in range(161, 173)] + [chr(c) for c in range(174, 256)]
extra = [chr(256 + i) for i in range(256 - len(byte_chars))]
for i, ch in enumerate(byte_chars + extra):
    vocab[ch] = i
vocab["he"] = len(vocab)
vocab["hel"] = len(vocab)
small = {"model": {"type": "BPE", "vocab": vocab, "merges": ["h e", "he l"]},
         "added_tokens": [{"id": len(vocab), "content": "<|endoftext|>"}]}
put("tokenizer", "tokenizer_json", b"\x00" + json.dumps(small).encode())
for i, text in enumerate(["Hello world", "  spaces\tand\nlines", "héllo 🙂 日本語 <|endoftext|>", "'s 've 're 123 4567",
                          "\xff\xfe bad utf8".encode("latin-1").decode("latin-1")]):
    put("tokenizer", "text%d" % i, b"\x01" + text.encode("utf-8", "surrogateescape"))
put("tokenizer", "ids", b"\x02" + struct.pack("<12H", 15496, 995, 11, 220, 8582, 247, 224, 50256, 0, 1, 2, 3))

# Engines: reference engines of small op cases, and the tiny GPT-2 for reference and cpu.
def build(onnx, name, *flags):
    path = os.path.join(target("engine"), name + ".engine")
    r = subprocess.run([cli, "build", "--onnx=" + onnx, "--saveEngine=" + path, *flags],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        print("make_seeds: skipped engine %s: %s" % (name, r.stderr.strip().splitlines()[-1]))


for op in ["add_broadcast", "argmax", "concat_axis1", "gather_axis1_negative", "layer_norm_last",
           "matmul_batched", "reshape_zero_minus_one", "slice_negative_step", "softmax_axis1", "where",
           "constant_of_shape", "range_int", "split_18_num_outputs", "expand", "tile", "cumsum_int"]:
    if op in ops:
        build(os.path.join(root, "ops", op, "model.onnx"), op)
tiny = os.path.join(root, "gpt2-tiny", "legacy-opset17.onnx")
build(tiny, "gpt2-tiny-reference", "--backend=reference", "--maxBatch=2")
build(tiny, "gpt2-tiny-cpu", "--backend=cpu", "--maxBatch=2")
# Control flow and past inputs: an If with its branches in the plan, a with-past cpu plan.
build(os.path.join(root, "hostile", "if_outer_values.onnx"), "if-reference", "--backend=reference")
build(os.path.join(root, "gpt2-tiny", "past", "with-past.onnx"), "with-past-cpu", "--backend=cpu", "--maxBatch=2")
for t in sorted(os.listdir(out)):
    print("make_seeds: %-12s %d seeds" % (t, len(os.listdir(os.path.join(out, t)))))

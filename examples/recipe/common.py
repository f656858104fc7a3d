"""What the recipe's scripts share: its workloads, the timing and the tables.

The recipe (DistilGPT2 exported to ONNX, built with trtexec, PyTorch vs ONNX Runtime vs TensorRT)
timed forward passes at (batch, seq_len) in two tables and generation of N new tokens. Here every
framework is timed over the same whole loop: a forward pass over the input, logits out; and
greedy generation from a 12-token prompt, exactly N new tokens (end of text ignored).
"""
import argparse
import json
import os
import statistics
import time

import numpy as np

TABLE1 = [(1, 12), (8, 12), (16, 12)]
TABLE2 = [(8, 8), (8, 16), (8, 32)]
PROMPT = 12
VOCAB = 50257  # ids are drawn below it (parse_args takes the model's)


def parse_args(description, need_onnx=False):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--hf", help="Hugging Face GPT-2 folder (config.json + model.safetensors)")
    ap.add_argument("--onnx", help="ONNX export of the same model (logits output)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: every core)")
    ap.add_argument("--shapes", default=",".join(f"{b}x{s}" for b, s in TABLE1 + TABLE2),
                    help="forward shapes BATCHxSEQ, comma-separated (the recipe's two tables)")
    ap.add_argument("--generate", default="1x32,8x32", help="generation BATCHxNEW_TOKENS ('' for none)")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per row, at least")
    ap.add_argument("--min-seconds", type=float, default=1.0, help="timed seconds per row, at least")
    ap.add_argument("--vocab", type=int, default=0, help="ids below this (default: --hf's vocab_size, else 50257)")
    a = ap.parse_args()
    global VOCAB
    if a.vocab:
        VOCAB = a.vocab
    elif a.hf and os.path.isfile(os.path.join(a.hf, "config.json")):
        with open(os.path.join(a.hf, "config.json")) as f:
            VOCAB = json.load(f).get("vocab_size", VOCAB)
    if need_onnx and not a.onnx:
        ap.error("--onnx is required")
    if not need_onnx and not (a.hf or a.onnx):
        ap.error("give --hf or --onnx")
    return a


def shapes(text):
    out = []
    for item in filter(None, text.split(",")):
        b, s = item.lower().split("x")
        out.append((int(b), int(s)))
    return out


def inputs(batch, seq, seed=0):
    """The same random ids (never all zeros) and an all-ones mask for every framework."""
    rng = np.random.default_rng(seed + 1000 * batch + seq)
    return rng.integers(0, VOCAB, (batch, seq), dtype=np.int64), np.ones((batch, seq), dtype=np.int64)


def timed(fn, runs, min_seconds, sync=lambda: None):
    """Median and p90 milliseconds of fn() after a warm-up; at least `runs` runs and `min_seconds`."""
    fn()
    sync()
    times, start = [], time.perf_counter()
    while len(times) < runs or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "p90_ms": times[int(0.9 * (len(times) - 1))], "runs": len(times)}


def print_tables(name, rows):
    """The recipe's tables: forward latency per (batch, seq), then generation."""
    fwd = [r for r in rows if r["kind"] == "forward"]
    gen = [r for r in rows if r["kind"] == "generate"]
    if fwd:
        print(f"\n{name}: forward latency (median, ms)\n")
        print("| batch | seq_len | median ms | p90 ms | runs |")
        print("|---|---|---|---|---|")
        for r in fwd:
            print(f"| {r['batch']} | {r['seq']} | {r['median_ms']:.3f} | {r['p90_ms']:.3f} | {r['runs']} |")
    if gen:
        print(f"\n{name}: generation, {PROMPT}-token prompt, greedy (the whole loop)\n")
        print("| batch | new tokens | median ms | ms per token | tokens/s |")
        print("|---|---|---|---|---|")
        for r in gen:
            per = r["median_ms"] / r["new_tokens"]
            print(f"| {r['batch']} | {r['new_tokens']} | {r['median_ms']:.2f} | {per:.3f} | "
                  f"{r['batch'] * r['new_tokens'] / r['median_ms'] * 1e3:.0f} |")


def missing(what, how):
    """A peer that is not installed: say so and how to install it (no traceback)."""
    print(f"{what} is not installed: {how}")
    return []

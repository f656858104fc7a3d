#!/usr/bin/env python3
"""The recipe's TensorRT script, on gptrt: build an engine (profiles admitting the recipe's shapes),
time forward passes and KV-cache generation.

    python3 examples/recipe/run_gptrt.py --onnx distilgpt2.onnx [--device cuda --precision fp16]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def run(a):
    try:
        import gptrt
    except ImportError:
        return common.missing("gptrt's Python package", "pip install . (in the gptrt repository)")
    fwd, gen = common.shapes(a.shapes), common.shapes(a.generate)
    max_b = max([b for b, _ in fwd + gen] or [1])
    max_s = max([s for _, s in fwd] + [common.PROMPT + n for _, n in gen] or [1])
    # One profile, as trtexec's --minShapes=input_ids:1x1 --optShapes=... --maxShapes=...
    prof = {n: ((1, 1), (max_b, max(s for _, s in fwd) if fwd else 1), (max_b, max_s))
            for n in ("input_ids", "attention_mask")}
    engine = gptrt.build(onnx=a.onnx, hf=None if a.onnx else a.hf, profiles=[prof],
                         backend=a.device, precision=a.precision)
    ctx = engine.create_context(threads=a.threads)
    rows = []
    for b, s in fwd:
        ids, mask = common.inputs(b, s)
        r = common.timed(lambda: ctx.run(ids, mask), a.runs, a.min_seconds)
        rows.append({"framework": "gptrt", "kind": "forward", "batch": b, "seq": s, **r})
    for b, n in gen:
        ids, _ = common.inputs(b, common.PROMPT)
        prompts = ids.tolist()
        r = common.timed(lambda: gptrt.generate(engine, prompts, max_new_tokens=n, threads=a.threads),
                         max(3, a.runs // 4), a.min_seconds)
        rows.append({"framework": "gptrt", "kind": "generate", "batch": b, "new_tokens": n, **r})
    return rows


if __name__ == "__main__":
    args = common.parse_args(__doc__)
    common.print_tables(f"gptrt ({args.device}, {args.precision})", run(args))

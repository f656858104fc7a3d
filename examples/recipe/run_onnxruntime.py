#!/usr/bin/env python3
"""The recipe's ONNX Runtime script: time forward passes of the ONNX export, and generation as the
recipe ran it (no KV cache: the whole sequence re-fed for every new token).

    python3 examples/recipe/run_onnxruntime.py --onnx distilgpt2.onnx [--device cuda]
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def run(a):
    try:
        import onnxruntime as ort
    except ImportError:
        return common.missing("ONNX Runtime", "pip install onnxruntime (onnxruntime-gpu for --device cuda)")
    if not a.onnx:
        return common.missing("an ONNX file for ONNX Runtime", "give --onnx (scripts/export_onnx.py makes one)")
    opts = ort.SessionOptions()
    if a.threads:
        opts.intra_op_num_threads = a.threads
    providers = ["CUDAExecutionProvider"] if a.device == "cuda" else ["CPUExecutionProvider"]
    if a.device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        return common.missing("ONNX Runtime's CUDA provider", "pip install onnxruntime-gpu")
    sess = ort.InferenceSession(a.onnx, opts, providers=providers)
    names = [i.name for i in sess.get_inputs()]
    rows = []
    for b, s in common.shapes(a.shapes):
        ids, mask = common.inputs(b, s)
        feed = dict(zip(names, (ids, mask)))
        r = common.timed(lambda: sess.run(None, feed), a.runs, a.min_seconds)
        rows.append({"framework": "onnxruntime", "kind": "forward", "batch": b, "seq": s, **r})
    for b, n in common.shapes(a.generate):
        ids, _ = common.inputs(b, common.PROMPT)

        def loop():
            seq = ids
            for _ in range(n):
                logits = sess.run(None, dict(zip(names, (seq, np.ones_like(seq)))))[0]
                seq = np.concatenate([seq, logits[:, -1].argmax(-1)[:, None].astype(np.int64)], axis=1)
            return seq

        r = common.timed(loop, max(3, a.runs // 4), a.min_seconds)
        rows.append({"framework": "onnxruntime", "kind": "generate", "batch": b, "new_tokens": n, **r})
    return rows


if __name__ == "__main__":
    args = common.parse_args(__doc__, need_onnx=True)
    common.print_tables(f"ONNX Runtime ({args.device})", run(args))

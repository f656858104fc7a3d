#!/usr/bin/env python3
"""The recipe's benchmark_all.py: PyTorch, ONNX Runtime and gptrt on the same model, inputs and
precision, one after another in this process, in the recipe's tables with how many times faster
gptrt is. A framework that is not installed is named with how to install it.

    python3 examples/recipe/benchmark_all.py --hf distilgpt2/ --onnx distilgpt2.onnx [--device cuda]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import run_gptrt  # noqa: E402
import run_onnxruntime  # noqa: E402
import run_pytorch  # noqa: E402


def main():
    a = common.parse_args(__doc__)
    rows = run_pytorch.run(a) + run_onnxruntime.run(a) + run_gptrt.run(a)
    names = [n for n in ("pytorch", "onnxruntime", "gptrt") if any(r["framework"] == n for r in rows)]
    for kind, key, head in (("forward", "seq", "seq_len"), ("generate", "new_tokens", "new tokens")):
        sel = [r for r in rows if r["kind"] == kind]
        if not sel:
            continue
        title = "forward latency" if kind == "forward" else f"generation ({common.PROMPT}-token prompt, greedy, whole loop)"
        print(f"\n{title}, median ms ({a.device}, {a.precision}); in brackets: gptrt is that many times faster\n")
        print(f"| batch | {head} | " + " | ".join(names) + " |")
        print("|---|---|" + "---|" * len(names))
        for b, x in sorted({(r["batch"], r[key]) for r in sel}):
            cell = {r["framework"]: r["median_ms"] for r in sel if r["batch"] == b and r[key] == x}
            g = cell.get("gptrt")
            out = []
            for n in names:
                v = cell.get(n)
                if v is None:
                    out.append("—")
                elif n != "gptrt" and g:
                    out.append(f"{v:.3f} ({v / g:.1f}x)")
                else:
                    out.append(f"{v:.3f}")
            print(f"| {b} | {x} | " + " | ".join(out) + " |")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())

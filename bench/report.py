#!/usr/bin/env python3
"""Writes the benchmark report from rows: results.json, results.csv, results.md and latency.png.

    report.py --rows ROWS.json [--rows MORE.json] --meta META.json --out DIR
    report.py --from DIR/results.json --out DIR        # re-render (e.g. the chart on another machine)

Table 1 is the recipe's batch 1/8/16 x seq 12, Table 2 its batch 8 x seq 8/16/32; any other grid
gets the full table. One column per framework and precision; every row of results.json/csv carries
max |dlogit| against PyTorch FP32 and top-1 agreement (or a reason it has none).
"""
import argparse
import csv
import json
import os
import sys

COLUMNS = ["framework", "precision", "device", "kind", "batch", "seq_len", "threads", "median_ms", "p90_ms", "p99_ms",
           "mean_ms", "runs", "build_ms", "ms_per_token", "max_abs_diff", "top1_agreement", "mean_kl", "status", "accuracy_note", "kernels"]


def column_name(r):
    return f"{r['framework']} {r['precision']}"


def fmt_ms(v):
    if v is None:
        return "—"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def forward_table(rows, shapes, first_header, key):
    cols = []
    for r in rows:
        if r["kind"] == "forward" and column_name(r) not in cols:
            cols.append(column_name(r))
    lines = ["| " + first_header + " | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for b, s in shapes:
        cells = []
        for c in cols:
            hit = [r for r in rows if r["kind"] == "forward" and column_name(r) == c and r["batch"] == b and r["seq_len"] == s]
            if not hit or hit[0].get("median_ms") is None:
                cells.append("n/a" if not hit else "not run")
            else:
                cells.append(fmt_ms(hit[0]["median_ms"]) + " ms")
        lines.append(f"| {key(b, s)} | " + " | ".join(cells) + " |")
    return lines


def markdown(rows, meta):
    out = [f"# Benchmark: {meta.get('device_name', meta.get('device', '?'))}, {meta.get('date', '')}", ""]
    out += ["| | |", "|---|---|"]
    for k in ("device", "device_name", "cpu", "threads", "model", "gptrt_commit", "gptrt_backend", "peer_isa_cap", "versions", "date", "command"):
        if k in meta:
            v = meta[k]
            if isinstance(v, dict):
                v = ", ".join(f"{a} {b}" for a, b in v.items())
            out.append(f"| {k} | {v} |")
    out.append("")
    if meta.get("read_bandwidth_gbs") and meta.get("device") == "cuda":
        out.append(f"gptrt engine: built in {meta['gptrt_build_ms']:.0f} ms, loaded in {meta['gptrt_load_ms']:.1f} ms. "
                   "gptrt-cuda rows time the GPU compute of one forward pass (a CUDA graph replay, inputs and logits "
                   "on the GPU), as the PyTorch rows time the model on the device.")
        out.append("")
    elif meta.get("read_bandwidth_gbs"):
        out.append(f"gptrt engine: built in {meta['gptrt_build_ms']:.0f} ms, loaded in {meta['gptrt_load_ms']:.1f} ms. "
                   f"Memory read bandwidth measured in this run: {meta['read_bandwidth_gbs']:.1f} GB/s, so reading the "
                   f"{meta['weight_bytes'] / 1e6:.1f} MB of FP32 weights once takes {meta['weight_read_floor_ms']:.1f} ms "
                   f"(the weight-read floor of a forward pass).")
        out.append("")
    kernels = {}
    for r in rows:
        if r.get("kernels"):
            kernels.setdefault((r["framework"], r["precision"]), r["kernels"])
    if kernels:
        out += ["Matrix-product kernels the peers reported: " +
                "; ".join(f"{fw} {prec}: {k}" for (fw, prec), k in kernels.items()) + ".", ""]
    fwd = [r for r in rows if r["kind"] == "forward"]
    shapes = []
    for r in fwd:
        if (r["batch"], r["seq_len"]) not in shapes:
            shapes.append((r["batch"], r["seq_len"]))
    t1 = [x for x in [(1, 12), (8, 12), (16, 12)] if x in shapes]
    t2 = [x for x in [(8, 8), (8, 16), (8, 32)] if x in shapes]
    if t1:
        out += ["## Table 1: forward latency, seq_len 12 (median per forward pass)", ""]
        out += forward_table(fwd, t1, "batch", lambda b, s: str(b)) + [""]
    if t2:
        out += ["## Table 2: forward latency, batch 8 (median per forward pass)", ""]
        out += forward_table(fwd, t2, "seq_len", lambda b, s: str(s)) + [""]
    rest = [x for x in shapes if x not in t1 and x not in t2]
    if rest:
        out += ["## Forward latency, other shapes (median)", ""]
        out += forward_table(fwd, rest, "batch x seq", lambda b, s: f"{b}x{s}") + [""]
    measured = [r for r in fwd if r.get("median_ms") is not None]
    if measured:
        out += ["## Accuracy and spread (every measured forward row)", "",
                "| framework | precision | batch x seq | median ms | p90 ms | p99 ms | runs | max abs dlogit vs PyTorch FP32 | top-1 agreement | mean KL (nats) |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in measured:
            acc = "—" if r.get("max_abs_diff") is None else f"{r['max_abs_diff']:.2e}"
            top = r.get("accuracy_note") or "—" if r.get("top1_agreement") is None else f"{100 * r['top1_agreement']:.2f}%"
            kl = "—" if r.get("mean_kl") is None else f"{r['mean_kl']:.2e}"
            out.append(f"| {r['framework']} | {r['precision']} | {r['batch']}x{r['seq_len']} | {fmt_ms(r['median_ms'])} | {fmt_ms(r.get('p90_ms'))} | "
                       f"{fmt_ms(r.get('p99_ms'))} | {r.get('runs', '—')} | {acc} | {top} | {kl} |")
        out.append("")
    gen = [r for r in rows if r["kind"] == "generate"]
    if gen:
        out += ["## End-to-end generation (greedy, 12-token prompt, whole loop timed)", "",
                "| framework | precision | batch | new tokens | median ms (whole loop) | ms per token | note |", "|---|---|---|---|---|---|---|"]
        for r in gen:
            per = "—" if r.get("ms_per_token") is None else f"{r['ms_per_token']:.3f}"
            out.append(f"| {r['framework']} | {r['precision']} | {r['batch']} | {r['seq_len']} | {fmt_ms(r.get('median_ms'))} | {per} | "
                       f"{r.get('status') or r.get('accuracy_note') or ''} |")
        out.append("")
    dec = [r for r in rows if r["kind"] == "decode" and r.get("median_ms") is not None]
    if dec:
        out += ["## Decode step (KV cache, 12-token prompt, median over 32 steps)", ""]
        if any(r.get("read_floor_ms") for r in dec):
            out += ["Weight-read floor: the bytes of weights a step reads (as the engine stores them) at the memory "
                    "read bandwidth measured in this run; \"of floor\" = floor / step (above 100%: part of the "
                    "weights came from the CPU's caches).", ""]
        out += ["| framework | precision | batch | ms per step | tokens/s (all rows) | weights read a step | read floor ms | of floor |",
                "|---|---|---|---|---|---|---|---|"]
        for r in dec:
            floor = r.get("read_floor_ms")
            extra = (f"{r['step_weight_bytes'] / 1e6:.1f} MB | {floor:.2f} | {100 * floor / r['median_ms']:.0f}%"
                     if floor else "— | — | —")
            out.append(f"| {r['framework']} | {r['precision']} | {r['batch']} | {r['median_ms']:.2f} | {r['tokens_per_s']:.1f} | {extra} |")
        out.append("")
    missing = {}
    for r in rows:
        if r.get("status"):
            missing.setdefault((r["framework"], r["precision"], r["kind"]), r["status"])
    if missing:
        out += ["## Not measured", ""]
        for (fw, p, kind), why in missing.items():
            out.append(f"- {fw} {p} ({kind}): {why}")
        out.append("")
    return "\n".join(out)


def chart(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "latency.png not written: matplotlib is not installed (pip install matplotlib), re-render with bench/report.py --from"
    fwd = [r for r in rows if r["kind"] == "forward" and r.get("median_ms") is not None]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, fixed, vary, title in ((axes[0], ("seq_len", 12), "batch", "latency vs batch (seq_len 12)"),
                                   (axes[1], ("batch", 8), "seq_len", "latency vs seq_len (batch 8)")):
        for name in sorted({column_name(r) for r in fwd}):
            pts = sorted((r[vary], r["median_ms"]) for r in fwd if column_name(r) == name and r[fixed[0]] == fixed[1])
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_yscale("log")
        ax.set_xlabel(vary)
        ax.set_ylabel("median latency (ms, log scale)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, loc="best", framealpha=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return None


def write_all(rows, meta, out):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        meta_cols = ["date", "gptrt_commit", "device_name"]
        w.writerow(COLUMNS + meta_cols)
        for r in rows:
            w.writerow([r.get(c) for c in COLUMNS] + [meta.get(c) for c in meta_cols])
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(markdown(rows, meta) + "\n")
    return chart(rows, os.path.join(out, "latency.png"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", action="append", default=[])
    ap.add_argument("--meta")
    ap.add_argument("--from", dest="src")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.src:
        with open(a.src) as f:
            data = json.load(f)
        rows, meta = data["rows"], data["meta"]
    else:
        rows = []
        for p in a.rows:
            if os.path.exists(p):
                with open(p) as f:
                    rows += json.load(f)
        meta = {}
        if a.meta:
            with open(a.meta) as f:
                meta = json.load(f)
    note = write_all(rows, meta, a.out)
    if note:
        print(note, file=sys.stderr)
    print(f"report: {a.out}/results.md, results.csv, results.json" + ("" if note else ", latency.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

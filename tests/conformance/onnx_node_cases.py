#!/usr/bin/env python3
"""ONNX's own operator conformance cases against gptrt (issue 26).

The cases are generated at test time from the installed `onnx` package's case generators
(onnx.backend.test.case.node: model, inputs and expected outputs); none are committed. Every
case whose ops are all ones gptrt imports (`gptrt inspect --ops`), at an opset gptrt reads and
with .npy-representable inputs, runs through `gptrt run` on each backend given and is compared
with the case's own tolerances. Cases that are known not to pass are listed, with the reason, in
known_gaps.txt next to this script: a listed case that passes, or an unlisted one that fails,
fails the test.

    python3 tests/conformance/onnx_node_cases.py GPTRT_CLI [--backends reference,cpu] [--keep DIR]
"""
import argparse
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy as np

try:
    import onnx
    import onnx.backend.test.case.node as node_cases
except ImportError:
    print("onnx_node_cases: the onnx package is missing; install it with `pip install onnx` "
          "(scripts/install_deps.sh does)")
    sys.exit(77)

NPY_DTYPES = {np.float32, np.float64, np.float16, np.int64, np.int32, np.int8, np.uint8, np.bool_}
HERE = os.path.dirname(os.path.abspath(__file__))


def supported_ops(cli):
    out = subprocess.run([cli, "inspect", "--ops"], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    first = lines[0]
    lo, hi = [int(x) for x in first.split("opsets ")[1].rstrip("):").split("-")]
    return {l.strip() for l in lines[1:] if l.strip()}, lo, hi


def read_gaps():
    gaps = {}
    with open(os.path.join(HERE, "known_gaps.txt")) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, reason = line.partition(" ")
            gaps[name] = reason.strip()
    return gaps


def runnable(case, ops, lo, hi):
    """None when the case can run, else why not."""
    m = case.model
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not lo <= opset <= hi:
        return "opset %s" % opset
    for n in m.graph.node:
        if n.domain not in ("", "ai.onnx") or n.op_type not in ops:
            return "op %s" % n.op_type
    if len(case.data_sets) == 0:
        return "no data"
    inputs, outputs = case.data_sets[0]
    for a in list(inputs) + list(outputs):
        if not isinstance(a, np.ndarray) or a.dtype.type not in NPY_DTYPES:
            return "dtype"
    return None


def close(got, want, rtol, atol):
    if got.shape != want.shape:
        return "shape %s, expected %s" % (got.shape, want.shape)
    g = got.astype(np.float64)
    w = want.astype(np.float64)
    nan = np.isnan(w)
    if not np.array_equal(np.isnan(g), nan):
        return "NaN positions differ"
    g, w = g[~nan], w[~nan]
    if g.size and not np.allclose(g, w, rtol=rtol, atol=atol):
        return "max |diff| %.3g" % float(np.max(np.abs(g - w)))
    return None


def run_case(cli, case, backend, root):
    d = os.path.join(root, backend, case.name)
    os.makedirs(d, exist_ok=True)
    onnx.save(case.model, os.path.join(d, "model.onnx"))
    inputs, outputs = case.data_sets[0]
    names = [i.name for i in case.model.graph.input]
    init = {i.name for i in case.model.graph.initializer}
    flags = []
    for name, a in zip([n for n in names if n not in init], inputs):
        p = os.path.join(d, "in_%d.npy" % len(flags))
        np.save(p, np.asarray(a))
        flags.append("%s:%s" % (name, p))
    cmd = [cli, "run", "--onnx=" + os.path.join(d, "model.onnx"), "--backend=" + backend,
           "--exportOutput=" + os.path.join(d, "out")]
    if flags:
        cmd.append("--loadInputs=" + ",".join(flags))
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "timed out"
    if r.returncode != 0:
        if r.returncode < 0 or "internal error" in r.stderr:
            return "CRASH: " + (r.stderr.strip().splitlines() or ["signal %d" % -r.returncode])[-1]
        return "refused: " + (r.stderr.strip().splitlines() or [""])[-1][:160]
    for o, want in zip(case.model.graph.output, outputs):
        safe = o.name.replace("/", "_").replace("\\", "_").replace(":", "_")
        p = os.path.join(d, "out", safe + ".npy")
        if not os.path.exists(p):
            return "no output %s" % o.name
        why = close(np.load(p), np.asarray(want), case.rtol, case.atol)
        if why:
            return "output %s: %s" % (o.name, why)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cli")
    ap.add_argument("--backends", default="reference,cpu")
    ap.add_argument("--keep", help="keep the generated cases in this folder")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    ops, lo, hi = supported_ops(args.cli)
    gaps = read_gaps()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            cases = node_cases.collect_testcases(None)
    todo = [c for c in cases if runnable(c, ops, lo, hi) is None]
    root = args.keep or tempfile.mkdtemp(prefix="gptrt_onnx_cases_")
    failures, stale, passed, known = [], [], 0, 0
    backends = args.backends.split(",")
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        jobs = {pool.submit(run_case, args.cli, c, b, root): (c.name, b) for c in todo for b in backends}
        results = {jobs[f]: f.result() for f in concurrent.futures.as_completed(jobs)}
    for (name, b), why in sorted(results.items()):
        key = name
        if why is None:
            passed += 1
            if key in gaps and all(results.get((name, x)) is None for x in backends):
                stale.append(name)
        elif key in gaps and not why.startswith("CRASH"):
            known += 1
        else:
            failures.append("%s on %s: %s" % (name, b, why))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    print("onnx_node_cases: %d cases generated, %d runnable with gptrt's ops; on %s: %d passed, "
          "%d known gaps (known_gaps.txt), %d failures" % (len(cases), len(todo), "+".join(backends),
                                                          passed, known, len(failures)))
    for f in failures:
        print("  FAIL", f)
    for s in sorted(set(stale)):
        print("  STALE known gap (it passes now; remove it from known_gaps.txt):", s)
    return 1 if failures or stale else 0


if __name__ == "__main__":
    sys.exit(main())

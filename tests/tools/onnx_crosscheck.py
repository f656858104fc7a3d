#!/usr/bin/env python3
"""gptrt's ONNX reader vs the `onnx` package: same nodes, attributes and initializer bytes.

    onnx_crosscheck.py ONNX_DUMP_BINARY TEST_DATA_DIR
"""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def fnv(b):
    h = 0xcbf29ce484222325
    for x in b:
        h = ((h ^ x) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def fnv_np(arr):
    # Vectorised FNV would change the hash; weights are small (tiny fixture), so plain loop is fine.
    return fnv(np.ascontiguousarray(arr).tobytes())


def tensor_desc(t):
    arr = numpy_helper.to_array(t)
    return {"name": t.name, "dtype": t.data_type, "dims": list(t.dims), "fnv": fnv_np(arr)}


def attr_value(a):
    v = onnx.helper.get_attribute_value(a)
    if a.type == onnx.AttributeProto.TENSOR:
        return tensor_desc(v)
    if a.type == onnx.AttributeProto.STRING:
        return v.decode()
    if a.type == onnx.AttributeProto.FLOAT:
        return float(np.float32(v))
    if a.type == onnx.AttributeProto.FLOATS:
        return [float(np.float32(x)) for x in v]
    if a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS):
        return v
    return None


def main():
    dump, data = sys.argv[1], sys.argv[2]
    models = sorted(glob.glob(os.path.join(data, "gpt2-tiny", "**", "*.onnx"), recursive=True))
    models += sorted(glob.glob(os.path.join(data, "ops", "*", "model.onnx")))[:20]
    failures = 0
    for path in models:
        ours = json.loads(subprocess.run([dump, path], check=True, capture_output=True, text=True).stdout)
        m = onnx.load(path)
        theirs_nodes = [{"op": n.op_type, "name": n.name, "inputs": list(n.input), "outputs": list(n.output),
                         "attrs": {a.name: attr_value(a) for a in n.attribute}} for n in m.graph.node]
        theirs_inits = [tensor_desc(t) for t in m.graph.initializer]
        problems = []
        if ours["ir_version"] != m.ir_version:
            problems.append("ir_version")
        if ours["opsets"] != {o.domain: o.version for o in m.opset_import}:
            problems.append("opsets")
        if len(ours["nodes"]) != len(theirs_nodes):
            problems.append(f"node count {len(ours['nodes'])} vs {len(theirs_nodes)}")
        for a, b in zip(ours["nodes"], theirs_nodes):
            for key in ("op", "name", "inputs", "outputs"):
                if a[key] != b[key]:
                    problems.append(f"node {b['name']}: {key} {a[key]} vs {b[key]}")
            for k, v in b["attrs"].items():
                if k not in a["attrs"]:
                    problems.append(f"node {b['name']}: attribute {k} missing")
                elif isinstance(v, float) and np.float32(a["attrs"][k]) != np.float32(v):
                    problems.append(f"node {b['name']}: attribute {k} {a['attrs'][k]} vs {v}")
                elif not isinstance(v, float) and a["attrs"][k] != v:
                    problems.append(f"node {b['name']}: attribute {k} {a['attrs'][k]} vs {v}")
        if ours["initializers"] != theirs_inits:
            problems.append("initializers differ (name, dtype, dims or bytes)")
        status = "ok" if not problems else "MISMATCH: " + "; ".join(problems[:5])
        print(f"{os.path.relpath(path, data)}: {len(theirs_nodes)} nodes, {len(theirs_inits)} initializers: {status}")
        failures += bool(problems)
    print(f"{len(models)} models, {failures} mismatched")
    return 1 if failures or not models else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Per-kernel GPU durations of one forward pass of a CUDA engine, measured by Nsight Compute
(no cache flush, no clock locking), in launch order, with the kernels' total.

usage: kernel_times.py ENGINE SHAPE [extra env, e.g. GPTRT_CUDA_GEMM=cublaslt]
"""
import csv
import io
import os
import subprocess
import sys

engine, shape = sys.argv[1], sys.argv[2]
env = dict(os.environ)
for kv in sys.argv[3:]:
    k, v = kv.split("=", 1)
    env[k] = v
gptrt = os.path.join(os.path.dirname(__file__), "..", "..", "build", "release", "gptrt")
ncu = "/usr/local/cuda/bin/ncu"
# exec runs warm-up passes first; skip them and profile one whole pass (counted from its end).
probe = subprocess.run([ncu, "--csv", "--metrics", "gpu__time_duration.sum", "--cache-control",
                        "none", "--clock-control", "none", gptrt, "exec", "--loadEngine", engine,
                        "--shapes", f"input_ids:{shape},attention_mask:{shape}", "--iterations",
                        "2", "--duration", "0", "--warmUp", "0"],
                       env=env, capture_output=True, text=True)
rows = [r for r in csv.DictReader(io.StringIO(
    "\n".join(l for l in probe.stdout.splitlines() if l.startswith('"'))))]
kernels = [(r["Kernel Name"], float(r["Metric Value"].replace(",", ""))) for r in rows
           if r["Metric Name"] == "gpu__time_duration.sum"]
# The last pass: kernels after the last embedding kernel start.
start = max(i for i, (n, _) in enumerate(kernels) if "embedding" in n)
total = 0.0
for name, ns in kernels[start:]:
    short = name.split("(")[0].replace("void ", "").replace("gptrt::", "").replace("(anonymous namespace)::", "")
    print(f"{ns / 1000:8.2f} us  {short[:90]}")
    total += ns
print(f"{total / 1000:8.2f} us  total of {len(kernels) - start} kernels ({shape}, {' '.join(sys.argv[3:]) or 'default'})")

#!/usr/bin/env python3
"""Kernel timeline of one CUDA graph replay from a GPTRT_CUDA_TRACE build's trace file.

Usage: trace_report.py TRACE_FILE [LABELS...]

Each line of the file is one block: "grid sm block start wait end mark0 mark1 mark2" (global
timer, ns; a mark is 0 where the kernel has none). Per kernel
(in start order) it prints: blocks, SMs, when its first block started, when its wait for the
previous kernel first returned, when its last block ended (all µs from the first start), and
  gap  = its first wait return minus the previous kernel's last end (the dependency's latency),
  run  = its last end minus its first wait return (its own critical path).
and, per block, the median time from its wait return to each mark and to its end (both skinny
GEMMs mark: before the rows, rows ready in shared memory, first column group multiplied).
LABELS, when given, name the kernels in order (the rest are numbered).
"""
import collections
import signal
import sys


def median_after_wait(blocks, field):
    """Median over the blocks of (a time stamp - the block's wait return), µs; '-' if unset."""
    d = sorted(r[field] - r[3] for r in blocks if r[field])
    return f"{d[len(d) // 2] / 1e3:5.2f}" if d else "    -"


def main() -> None:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # (piped into head: stop quietly)
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    blocks = collections.defaultdict(list)
    with open(sys.argv[1]) as f:
        for line in f:
            v = [int(x) for x in line.split()]
            grid, sm, block, start, wait, end = v[:6]
            marks = v[6:9] if len(v) >= 9 else [0, 0, 0]
            blocks[grid].append((sm, block, start, wait, end, *marks))
    if not blocks:
        sys.exit(f"{sys.argv[1]}: no records")
    kernels = sorted(blocks.values(), key=lambda b: min(r[2] for r in b))
    t0 = min(r[2] for r in kernels[0])
    labels = sys.argv[2:]
    print(f"{'#':>3} {'kernel':<14} {'blocks':>6} {'SMs':>4} {'start':>8} {'wait':>8} "
          f"{'end':>8} {'gap':>6} {'run':>6}   median after the wait: mark0 mark1 mark2 end")
    prev_end = None
    for i, b in enumerate(kernels):
        start = min(r[2] for r in b) - t0
        wait = min(r[3] for r in b) - t0
        end = max(r[4] for r in b) - t0
        gap = "" if prev_end is None else f"{(wait - prev_end) / 1e3:6.2f}"
        label = labels[i] if i < len(labels) else str(i)
        print(f"{i:>3} {label:<14} {len(b):>6} {len({r[0] for r in b}):>4} {start / 1e3:8.2f} "
              f"{wait / 1e3:8.2f} {end / 1e3:8.2f} {gap:>6} {(end - wait) / 1e3:6.2f}   "
              + " ".join(median_after_wait(b, i) for i in (5, 6, 7, 4)))
        prev_end = end
    print(f"total {prev_end / 1e3:.2f} µs over {len(kernels)} kernels")


if __name__ == "__main__":
    main()

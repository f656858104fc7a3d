"""Statistics and accuracy shared by the benchmark harness (unit tested in tests/bench)."""
import math

import numpy as np


def summarize(samples_ms):
    """median, p90, p99 (nearest rank, as gptrt exec reports them), mean, min, max, runs."""
    s = sorted(samples_ms)
    if not s:
        raise ValueError("no timing samples")
    n = len(s)

    def pct(p):
        rank = math.ceil(p / 100.0 * n)
        return s[min(max(rank, 1), n) - 1]

    median = s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
    return {"median_ms": median, "p90_ms": pct(90), "p99_ms": pct(99), "mean_ms": sum(s) / n,
            "min_ms": s[0], "max_ms": s[-1], "runs": n}


def accuracy(logits, reference, mask):
    """max |dlogit|, top-1 agreement and the mean KL divergence KL(reference || logits) of the
    next-token distributions (nats) against reference logits at positions where mask == 1."""
    logits = np.asarray(logits, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if logits.shape != reference.shape:
        raise ValueError(f"logits shape {logits.shape} differs from the reference {reference.shape}")
    keep = np.asarray(mask).astype(bool)
    diff = float(np.abs(logits - reference)[keep].max())
    agree = float((logits.argmax(-1) == reference.argmax(-1))[keep].mean())

    def log_softmax(x):
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))
    lp, lq = log_softmax(reference), log_softmax(logits)
    kl = float((np.exp(lp) * (lp - lq)).sum(-1)[keep].mean())
    return {"max_abs_diff": diff, "top1_agreement": agree, "mean_kl": kl}


def time_it(fn, min_runs=100, min_seconds=3.0, warmup=10, clock=None, sync=None):
    """Runs fn() warmup times, then until both min_runs and min_seconds are reached.
    Returns per-run milliseconds. `sync` (e.g. torch.cuda.synchronize) runs before each clock read."""
    import time
    clock = clock or time.perf_counter
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    samples = []
    start = clock()
    while len(samples) < min_runs or clock() - start < min_seconds:
        t0 = clock()
        fn()
        if sync:
            sync()
        samples.append((clock() - t0) * 1e3)
    return samples

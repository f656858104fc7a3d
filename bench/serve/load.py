#!/usr/bin/env python3
"""A load generator for OpenAI-compatible completion servers (gptrt serve, llama.cpp's server,
vLLM), reporting as vLLM's serving benchmark does: request and output-token throughput, time to
first token (TTFT), time per output token after the first (TPOT) and inter-token latency (ITL),
mean / median / p90 / p99, and errors.

    python3 bench/serve/load.py --url http://127.0.0.1:8080 --concurrency 1,8,32,64 \\
        --requests 64 --prompt-tokens 12 --max-tokens 64 [--rate 10] [--json out.json]

Every request streams (server-sent events) a prompt of random token ids (the same seed, the same
prompts for every server) with temperature 0 and `ignore_eos`: `max_tokens` tokens are asked
for; a response with fewer counts what it got (the server's usage count where it sends one).
Tokens that arrive in one event (gptrt sends every token made since the client last read, when
the client lags) count with an inter-token latency of 0. At a fixed concurrency, N clients send
back to back, each on one keep-alive connection, spread over --procs processes (default: half the cores, at most 8: one Python
process's GIL would cap the events read from a fast server); with --rate, requests arrive as a
Poisson process at that many per second.
"""
import argparse
import http.client
import json
import os
import random
import socket
import statistics
import sys
import threading
import time
import urllib.parse


def percentile(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def connect(url, timeout):
    """A connection with TCP_NODELAY (as aiohttp's and httpx's): a small write never waits for
    the ACK of the one before."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def one_request(url, model, prompt, max_tokens, timeout, conn=None):
    """Streams one completion on `conn` (kept open for the next request: keep-alive, as the
    openai client's and vLLM's benchmark's connection pools do) or on a connection of its own;
    returns (ok, ttft, token times, error)."""
    own = conn is None
    if own:
        conn = connect(url, timeout)
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "ignore_eos": True, "stream_options": {"include_usage": True}}
    if model:
        body["model"] = model
    start = time.perf_counter()
    times, usage = [], None
    try:
        conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        r = conn.getresponse()
        if r.status != 200:
            return False, 0, [], f"HTTP {r.status}: {r.read()[:200]!r}"
        buf = b""
        while True:
            chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1)
            if not chunk:
                break
            buf += chunk
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                line = event.decode().strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    r.read()  # (the end of the body: the connection can carry the next request)
                    # The server's own count where it gives one (an event may carry no text).
                    if usage is not None and usage > len(times) and times:
                        times.extend([times[-1]] * (usage - len(times)))
                    return True, (times[0] - start) if times else 0, [t - start for t in times], None
                msg = json.loads(data)
                now = time.perf_counter()
                if msg.get("usage"):
                    usage = msg["usage"].get("completion_tokens")
                for ch in msg.get("choices", []):
                    if "token_ids" in ch:
                        n = len(ch["token_ids"])
                    else:  # one token per event (llama.cpp, vLLM)
                        n = 1 if ch.get("text") is not None and ch.get("finish_reason") is None else 0
                    times.extend([now] * n)
        return False, 0, [], "stream ended without [DONE]"
    except Exception as e:  # a refused or broken connection counts as an error
        return False, 0, [], repr(e)
    finally:
        if own:
            conn.close()


def clients(url, model, prompts, max_tokens, concurrency, timeout):
    """`concurrency` clients sending `prompts` back to back (threads of one process)."""
    results, lock = [], threading.Lock()
    todo = list(range(len(prompts)))

    def worker():
        conn, used = None, False  # one keep-alive connection a client
        while True:
            with lock:
                if not todo:
                    break
                i = todo.pop(0)
            if conn is None:
                conn, used = connect(url, timeout), False
            r = one_request(url, model, prompts[i], max_tokens, timeout, conn)
            if not r[0] and used:  # the server closed a kept connection: once more, on a new one
                conn.close()
                conn = connect(url, timeout)
                r = one_request(url, model, prompts[i], max_tokens, timeout, conn)
            used = True
            if not r[0]:
                conn.close()
                conn = None
            with lock:
                results.append(r)
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return results


def _clients(args):
    return clients(*args)


def run(url, model, prompts, max_tokens, concurrency, rate, timeout, procs=1):
    start = time.perf_counter()
    if rate:  # Poisson arrivals, a thread per request
        results, threads, t = [], [], start
        rng = random.Random(1)
        for i in range(len(prompts)):
            t += rng.expovariate(rate)
            time.sleep(max(0.0, t - time.perf_counter()))
            th = threading.Thread(target=lambda i=i: results.append(one_request(url, model, prompts[i], max_tokens, timeout)))
            th.start()
            threads.append(th)
        for th in threads:
            th.join()
        return summarise(results, concurrency, rate, time.perf_counter() - start)
    procs = max(1, min(procs, concurrency))
    if procs == 1:
        results = clients(url, model, prompts, max_tokens, concurrency, timeout)
        return summarise(results, concurrency, rate, time.perf_counter() - start)
    # Clients over several processes: one Python process (its GIL) would cap the events it can
    # read from a fast server at many streams.
    import multiprocessing
    jobs = [(url, model, prompts[p::procs], max_tokens, concurrency // procs + (p < concurrency % procs), timeout)
            for p in range(procs)]
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        start = time.perf_counter()
        results = [r for part in pool.map(_clients, jobs) for r in part]
    return summarise(results, concurrency, rate, time.perf_counter() - start)


def summarise(results, concurrency, rate, wall):
    ok = [r for r in results if r[0]]
    ttft = [r[1] * 1e3 for r in ok]
    tpot, itl, tokens = [], [], 0
    for _, _, times, _ in ok:
        tokens += len(times)
        if len(times) > 1:
            tpot.append((times[-1] - times[0]) / (len(times) - 1) * 1e3)
            itl += [(b - a) * 1e3 for a, b in zip(times, times[1:])]
    stat = lambda xs: {"mean": statistics.fmean(xs) if xs else float("nan"), "median": percentile(xs, 50),
                       "p90": percentile(xs, 90), "p99": percentile(xs, 99)}
    return {"concurrency": concurrency, "rate": rate, "requests": len(results), "errors": len(results) - len(ok),
            "error_examples": [r[3] for r in results if not r[0]][:3], "wall_s": wall,
            "request_throughput": len(ok) / wall, "output_token_throughput": tokens / wall,
            "ttft_ms": stat(ttft), "tpot_ms": stat(tpot), "itl_ms": stat(itl)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--model", default="")
    ap.add_argument("--concurrency", default="1,8,32,64")
    ap.add_argument("--rate", type=float, default=0, help="requests per second (Poisson); 0: fixed concurrency")
    ap.add_argument("--requests", type=int, default=0,
                    help="requests per level (default: --per-client per client, at least 16)")
    ap.add_argument("--per-client", type=int, default=4,
                    help="requests each client sends in turn at a fixed concurrency (default 4)")
    ap.add_argument("--prompt-tokens", type=int, default=12)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--procs", type=int, default=max(1, min(8, (os.cpu_count() or 2) // 2)),
                    help="client processes at a fixed concurrency (default: half the cores, at most 8)")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    rng = random.Random(0)
    levels = [0] if a.rate else [int(c) for c in a.concurrency.split(",")]
    most = a.requests or max(16, a.per_client * max(levels))
    prompts = [[rng.randrange(a.vocab) for _ in range(a.prompt_tokens)] for _ in range(most)]
    rows = []
    print(f"{'conc':>5} {'rate':>6} {'req/s':>8} {'out tok/s':>10} {'TTFT p50':>9} {'TTFT p99':>9} "
          f"{'TPOT p50':>9} {'ITL p50':>8} {'ITL p99':>8} {'errors':>6}")
    for c in levels:
        n = a.requests or max(16, a.per_client * c)
        r = run(a.url, a.model, prompts[:n], a.max_tokens, c, a.rate, a.timeout, a.procs)
        rows.append(r)
        print(f"{c:>5} {a.rate:>6g} {r['request_throughput']:>8.2f} {r['output_token_throughput']:>10.1f} "
              f"{r['ttft_ms']['median']:>9.2f} {r['ttft_ms']['p99']:>9.2f} {r['tpot_ms']['median']:>9.2f} "
              f"{r['itl_ms']['median']:>8.2f} {r['itl_ms']['p99']:>8.2f} {r['errors']:>6}")
        for e in r["error_examples"]:
            print("   error:", e)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

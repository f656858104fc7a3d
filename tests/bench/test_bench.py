#!/usr/bin/env python3
"""Unit tests of the benchmark harness: statistics, accuracy check, report writers."""
import json
import os
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from common import accuracy, summarize, time_it  # noqa: E402
import report  # noqa: E402


class Statistics(unittest.TestCase):
    def test_median_and_percentiles(self):
        s = summarize(list(range(1, 101)))
        self.assertEqual(s["median_ms"], 50.5)
        self.assertEqual(s["p90_ms"], 90)
        self.assertEqual(s["p99_ms"], 99)
        self.assertEqual(s["runs"], 100)
        s = summarize([3.0, 1.0, 2.0])
        self.assertEqual(s["median_ms"], 2.0)
        self.assertEqual(s["min_ms"], 1.0)
        with self.assertRaises(ValueError):
            summarize([])

    def test_time_it_respects_runs_and_duration(self):
        t = [0.0]

        def clock():
            t[0] += 0.001
            return t[0]
        samples = time_it(lambda: None, min_runs=7, min_seconds=0.0, warmup=0, clock=clock)
        self.assertEqual(len(samples), 7)
        samples = time_it(lambda: None, min_runs=1, min_seconds=0.05, warmup=0, clock=clock)
        self.assertGreaterEqual(len(samples), 10)


class Accuracy(unittest.TestCase):
    def test_masked_max_diff_and_top1(self):
        ref = np.zeros((1, 3, 4), dtype=np.float32)
        ref[0, :, 1] = 1
        got = ref.copy()
        got[0, 2, 3] = 5  # a pad position: ignored
        got[0, 1, 0] = 0.5
        acc = accuracy(got, ref, np.array([[1, 1, 0]]))
        self.assertAlmostEqual(acc["max_abs_diff"], 0.5)
        self.assertEqual(acc["top1_agreement"], 1.0)
        got[0, 0, 2] = 3  # changes the argmax at a real position
        acc = accuracy(got, ref, np.array([[1, 1, 0]]))
        self.assertEqual(acc["top1_agreement"], 0.5)
        with self.assertRaises(ValueError):
            accuracy(np.zeros((1, 2, 4)), ref, np.ones((1, 3)))

    def test_mean_kl_of_the_next_token_distributions(self):
        ref = np.log(np.array([[[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]]]))
        self.assertAlmostEqual(accuracy(ref, ref, np.ones((1, 2)))["mean_kl"], 0.0)
        got = np.log(np.array([[[0.25, 0.5, 0.25], [0.2, 0.3, 0.5]]])) + 7.0  # (a shift changes nothing)
        want = (0.5 * np.log(2) + 0.25 * np.log(0.5)) / 2  # the first row's KL, averaged over 2 rows
        self.assertAlmostEqual(accuracy(got, ref, np.ones((1, 2)))["mean_kl"], want)
        self.assertAlmostEqual(accuracy(got, ref, np.array([[0, 1]]))["mean_kl"], 0.0)


def row(fw, b, s, ms, kind="forward", **kw):
    r = {"framework": fw, "precision": "fp32", "device": "cpu", "kind": kind, "batch": b, "seq_len": s, "threads": 2,
         "median_ms": ms, "p90_ms": ms, "p99_ms": ms, "runs": 100, "max_abs_diff": 1e-6, "top1_agreement": 1.0}
    r.update(kw)
    return r


class Report(unittest.TestCase):
    def test_tables_have_the_recipes_rows_and_columns(self):
        rows = [row(fw, b, s, 1.0 + b) for fw in ("gptrt-cpu", "onnxruntime-cpu")
                for b, s in [(1, 12), (8, 12), (16, 12), (8, 8), (8, 16), (8, 32)]]
        rows.append(row("pytorch", 1, 12, None, status="not installed (pip install torch transformers)", max_abs_diff=None, top1_agreement=None))
        rows.append(row("onnxruntime-cpu", 1, 32, 40.0, kind="generate", ms_per_token=1.25))
        md = report.markdown(rows, {"device": "cpu", "date": "2026-11-26"})
        t1 = md.split("## Table 1")[1].split("## Table 2")[0]
        self.assertIn("| batch | gptrt-cpu fp32 | onnxruntime-cpu fp32 | pytorch fp32 |", t1)
        for b in (1, 8, 16):
            self.assertIn(f"| {b} | {report.fmt_ms(1.0 + b)} ms |", t1)
        t2 = md.split("## Table 2")[1].split("##")[0]
        for s in (8, 16, 32):
            self.assertIn(f"| {s} | 9.000 ms |", t2)
        self.assertIn("- pytorch fp32 (forward): not installed", md)
        self.assertIn("| onnxruntime-cpu | fp32 | 1 | 32 | 40.0 | 1.250 |", md)

    def test_writers(self):
        rows = [row("gptrt-cpu", 1, 12, 2.0), row("gptrt-cpu", 8, 12, 4.0)]
        with tempfile.TemporaryDirectory() as d:
            report.write_all(rows, {"date": "x", "gptrt_commit": "abc"}, d)
            with open(os.path.join(d, "results.json")) as f:
                data = json.load(f)
            self.assertEqual(len(data["rows"]), 2)
            self.assertEqual(data["meta"]["gptrt_commit"], "abc")
            with open(os.path.join(d, "results.csv")) as f:
                lines = f.read().splitlines()
            self.assertEqual(len(lines), 3)
            for col in ("framework", "batch", "seq_len", "median_ms", "p90_ms", "p99_ms", "max_abs_diff", "top1_agreement"):
                self.assertIn(col, lines[0])
            self.assertTrue(os.path.getsize(os.path.join(d, "latency.png")) > 1000)


class PeakedModel(unittest.TestCase):
    def test_only_the_token_table_is_scaled(self):
        import subprocess
        from safetensors.numpy import load_file
        here = os.path.dirname(os.path.abspath(__file__))
        src = os.path.join(here, "..", "data", "gpt2-tiny", "hf")
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run([sys.executable, os.path.join(here, "..", "..", "bench", "peaked_model.py"),
                                "--hf", src, "--out", d, "--scale", "4"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            a, b = load_file(os.path.join(src, "model.safetensors")), load_file(os.path.join(d, "model.safetensors"))
            self.assertEqual(set(a) - {"lm_head.weight"}, set(b))
            for name in b:
                want = a[name] * 4 if name.endswith("wte.weight") else a[name]
                np.testing.assert_allclose(b[name], want, rtol=1e-6, err_msg=name)
            self.assertTrue(os.path.isfile(os.path.join(d, "config.json")))
            bad = subprocess.run([sys.executable, os.path.join(here, "..", "..", "bench", "peaked_model.py"),
                                  "--hf", d + "/missing", "--out", d + "/x"], capture_output=True, text=True)
            self.assertEqual(bad.returncode, 2)
            self.assertIn("not found", bad.stderr)


if __name__ == "__main__":
    unittest.main()

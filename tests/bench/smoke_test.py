#!/usr/bin/env python3
"""A short run of `gptrt bench` on the tiny fixture with whatever peers are installed: the
tables must have the right rows and columns, and missing peers must be listed, not dropped.

    smoke_test.py GPTRT_BINARY TEST_DATA_DIR
"""
import json
import os
import subprocess
import sys
import tempfile

gptrt, data = sys.argv[1], sys.argv[2]
with tempfile.TemporaryDirectory() as out:
    cmd = [gptrt, "bench", "--onnx", os.path.join(data, "gpt2-tiny", "legacy-opset17.onnx"), "--shapes", "1x12,8x12,16x12,8x8",
           "--frameworks", "gptrt,onnxruntime,openvino,llama.cpp,ctranslate2,pytorch,tensorrt", "--threads", "1", "--min-runs", "3", "--min-seconds", "0", "--out", out]
    r = subprocess.run(cmd, capture_output=True, text=True)
    print(r.stdout[-3000:], r.stderr[-2000:])
    assert r.returncode == 0, "gptrt bench failed"
    md = open(os.path.join(out, "results.md")).read()
    t1 = md.split("## Table 1")[1].split("##")[0]
    assert "gptrt-cpu fp32" in t1 and "onnxruntime-cpu fp32" in t1, t1
    for b in (1, 8, 16):
        assert f"\n| {b} | " in t1, f"Table 1 lacks batch {b}"
    t2 = md.split("## Table 2")[1].split("##")[0]
    assert "\n| 8 | " in t2, t2
    assert "## Not measured" in md and "tensorrt" in md.split("## Not measured")[1], "missing peers must be listed"
    data_json = json.load(open(os.path.join(out, "results.json")))
    gptrt_rows = [x for x in data_json["rows"] if x["framework"].startswith("gptrt")]
    assert len(gptrt_rows) == 4 and all(x["median_ms"] > 0 and x["runs"] >= 3 for x in gptrt_rows)
    for x in data_json["rows"]:
        for key in ("framework", "precision", "device", "batch", "seq_len", "median_ms", "p90_ms", "p99_ms", "max_abs_diff", "top1_agreement"):
            assert key in x, (key, x)
        assert x["max_abs_diff"] is not None or x.get("accuracy_note") or x.get("status"), x
    # OpenVINO: its FP32 hint and its default where it is installed, else listed as not installed.
    ov_rows = [x for x in data_json["rows"] if x["framework"] == "openvino-cpu"]
    try:
        import openvino  # noqa: F401
        assert {x["precision"] for x in ov_rows if x.get("median_ms")} >= {"fp32"}, ov_rows
        assert any(x["precision"].endswith("(its default)") for x in ov_rows), ov_rows
        # Each measured row names the kernels OpenVINO's matrix products ran on.
        assert all(x["kernels"] for x in ov_rows if x.get("median_ms")), ov_rows
        assert "Matrix-product kernels the peers reported: openvino-cpu" in md, md
        # --peerIsa caps it through ONEDNN_MAX_CPU_ISA: no AVX-512 or AMX kernel under an AVX2 cap.
        capped = os.path.join(out, "capped")
        r = subprocess.run([gptrt, "bench", "--onnx", os.path.join(data, "gpt2-tiny", "legacy-opset17.onnx"),
                            "--frameworks", "gptrt,openvino", "--peerIsa", "avx2", "--shapes", "8x12", "--threads", "1",
                            "--min-runs", "3", "--min-seconds", "0", "--out", capped], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        rows = [x for x in json.load(open(os.path.join(capped, "results.json")))["rows"] if x["framework"] == "openvino-cpu"]
        measured = [x for x in rows if x.get("median_ms")]
        assert measured and all(x["kernels"] and "avx512" not in x["kernels"] and "amx" not in x["kernels"]
                                for x in measured), rows
        # (Its default may pick BF16 from the CPU's own flags, which an AVX2 cap leaves no kernels for:
        # then the row says so.)
        assert all(x.get("median_ms") or "ONEDNN_MAX_CPU_ISA=AVX2" in x["status"] for x in rows), rows
        assert "ONEDNN_MAX_CPU_ISA=AVX2" in open(os.path.join(capped, "results.md")).read()
    except ImportError:
        assert ov_rows and all("not installed" in x["status"] for x in ov_rows), ov_rows
    # llama.cpp: generation rows only (none asked here), or named as not installed.
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        assert "llama.cpp-cpu" in md.split("## Not measured")[1], "a missing llama.cpp must be listed"
    # CTranslate2: measured (its converter on the folder the bench exported from) or said why not.
    assert "ctranslate2-cpu" in md, "CTranslate2's rows must be there, measured or with the reason"
    assert os.path.exists(os.path.join(out, "results.csv"))
    assert os.path.exists(os.path.join(out, "latency.png"))
    bad = subprocess.run([gptrt, "bench", "--onnx", os.path.join(data, "gpt2-tiny", "legacy-opset17.onnx"),
                          "--frameworks", "gptrt,openvin", "--out", out], capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown framework 'openvin'" in bad.stderr, bad.stderr
    bad = subprocess.run([gptrt, "bench", "--onnx", os.path.join(data, "gpt2-tiny", "legacy-opset17.onnx"),
                          "--peerIsa", "avx9", "--out", out], capture_output=True, text=True)
    assert bad.returncode != 0 and "--peerIsa is 'avx9'; it takes avx2, avx512" in bad.stderr, bad.stderr
    # The decode table: each precision's step against the read of the weights as it stores them.
    step_bytes = {}
    for prec in ("fp32", "int8"):
        d = os.path.join(out, "decode-" + prec)
        r = subprocess.run([gptrt, "bench", "--onnx", os.path.join(data, "gpt2-tiny", "legacy-opset17.onnx"),
                            "--frameworks", "gptrt", "--precision", prec, "--shapes", "1x12", "--decode", "1",
                            "--threads", "1", "--min-runs", "3", "--min-seconds", "0", "--out", d],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        (row,) = [x for x in json.load(open(os.path.join(d, "results.json")))["rows"] if x["kind"] == "decode"]
        assert row["median_ms"] > 0 and row["read_floor_ms"] > 0, row
        step_bytes[prec] = row["step_weight_bytes"]
        assert "| read floor ms | of floor |" in open(os.path.join(d, "results.md")).read()
    # INT8 weights (one byte each, FP32 scales, LayerNorms and biases) read under a third of FP32's.
    assert 3 * step_bytes["int8"] < step_bytes["fp32"], step_bytes
print("bench smoke test passed")

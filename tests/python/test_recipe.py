"""The recipe's scripts (examples/recipe/) end to end on the tiny fixture, fast settings: each
prints its tables; benchmark_all puts the frameworks side by side; a peer that is not installed
is named with how to install it, never a traceback."""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
RECIPE = os.path.join(ROOT, "examples", "recipe")
TINY = os.path.join(ROOT, "tests", "data", "gpt2-tiny")
FAST = ["--hf", os.path.join(TINY, "hf"), "--onnx", os.path.join(TINY, "legacy-opset17.onnx"), "--runs", "2",
        "--min-seconds", "0", "--shapes", "1x12,8x8", "--generate", "2x4"]


def run(script, *args, hide=()):
    """Runs a recipe script; `hide` makes those modules unimportable (a machine without them)."""
    code = ("import runpy, sys\n"
            f"for m in {list(hide)!r}: sys.modules[m] = None\n"
            f"sys.argv = [{script!r}] + {list(args)!r}\n"
            f"runpy.run_path({os.path.join(RECIPE, script)!r}, run_name='__main__')\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)


def test_run_gptrt_prints_the_recipes_tables():
    r = run("run_gptrt.py", *FAST)
    assert r.returncode == 0, r.stderr
    assert "forward latency" in r.stdout and "| 8 | 8 |" in r.stdout
    assert "generation" in r.stdout and "| 2 | 4 |" in r.stdout


def test_run_onnxruntime_prints_the_recipes_tables():
    pytest.importorskip("onnxruntime")
    r = run("run_onnxruntime.py", *FAST)
    assert r.returncode == 0, r.stderr
    assert "| 1 | 12 |" in r.stdout and "| 2 | 4 |" in r.stdout


def test_run_pytorch_prints_the_recipes_tables():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    r = run("run_pytorch.py", *FAST)
    assert r.returncode == 0, r.stderr
    assert "| 1 | 12 |" in r.stdout and "| 2 | 4 |" in r.stdout


def test_benchmark_all_compares_and_names_missing_peers():
    r = run("benchmark_all.py", *FAST, hide=["torch", "onnxruntime"])
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert "PyTorch with transformers is not installed: pip install torch transformers" in r.stdout
    assert "ONNX Runtime is not installed: pip install onnxruntime" in r.stdout
    assert "| batch | seq_len | gptrt |" in r.stdout
    pytest.importorskip("onnxruntime")
    r = run("benchmark_all.py", *FAST, hide=["torch"])
    assert r.returncode == 0, r.stderr
    assert "| batch | seq_len | onnxruntime | gptrt |" in r.stdout
    assert "x) |" in r.stdout  # how many times faster gptrt is


def test_without_the_gptrt_package_the_script_says_how_to_install_it():
    r = run("run_gptrt.py", *FAST, hide=["gptrt"])
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert "gptrt's Python package is not installed: pip install ." in r.stdout

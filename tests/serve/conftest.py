"""Fixtures of the server tests: the real `gptrt serve` binary (GPTRT_CLI) on the tiny fixture
model (token ids; its goldens), and on a small model with GPT-2's vocabulary and tokenizer
(text prompts), each started on a free port and stopped with SIGTERM."""
import json
import os
import signal
import subprocess
import time
import urllib.request

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")


def cli():
    path = os.environ.get("GPTRT_CLI")
    if not path:
        pytest.skip("GPTRT_CLI is not set (ctest sets it)")
    return path


class ServerProcess:
    def __init__(self, *flags, env=None):
        self.proc = subprocess.Popen([cli(), "serve", "--port=0", *flags], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            err = self.proc.stderr.read()
            raise RuntimeError("gptrt serve did not start: " + err)
        self.port = int(line)
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(200):
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except Exception:
                time.sleep(0.05)

    def post(self, path, body, headers=None, raw=None):
        data = raw if raw is not None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, json.loads(r.read()), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}"), dict(e.headers)

    def get(self, path):
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metric(self, name):
        for line in self.get("/metrics")[1].splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise KeyError(name)

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


def write_small_gpt2(out, vocab=50257, layers=2, embd=64, heads=4, positions=128, seed=0):
    """A Hugging Face GPT-2 folder with GPT-2's vocabulary and seeded random weights (small
    enough for tests, big enough for the real tokenizer)."""
    from safetensors.numpy import save_file
    g = np.random.default_rng(seed)
    w = {"transformer.wte.weight": g.normal(0, 0.5, (vocab, embd)),
         "transformer.wpe.weight": g.normal(0, 0.1, (positions, embd)),
         "transformer.ln_f.weight": 1 + g.normal(0, 0.1, embd), "transformer.ln_f.bias": g.normal(0, 0.1, embd)}
    for l in range(layers):
        p = f"transformer.h.{l}."
        for ln in ("ln_1", "ln_2"):
            w[p + ln + ".weight"] = 1 + g.normal(0, 0.1, embd)
            w[p + ln + ".bias"] = g.normal(0, 0.1, embd)
        for name, shape in (("attn.c_attn", (embd, 3 * embd)), ("attn.c_proj", (embd, embd)),
                            ("mlp.c_fc", (embd, 4 * embd)), ("mlp.c_proj", (4 * embd, embd))):
            w[p + name + ".weight"] = g.normal(0, 0.2, shape)
            w[p + name + ".bias"] = g.normal(0, 0.1, shape[1])
    os.makedirs(out, exist_ok=True)
    save_file({k: v.astype(np.float32) for k, v in w.items()}, os.path.join(out, "model.safetensors"))
    cfg = {"model_type": "gpt2", "n_layer": layers, "n_embd": embd, "n_head": heads, "vocab_size": vocab,
           "n_positions": positions, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
           "tie_word_embeddings": True}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f)
    import shutil
    shutil.copy(os.path.join(DATA, "tokenizer", "tokenizer.json"), os.path.join(out, "tokenizer.json"))
    return out


@pytest.fixture(scope="session")
def text_model(tmp_path_factory):
    return write_small_gpt2(str(tmp_path_factory.mktemp("text_model")))


@pytest.fixture(scope="session")
def tiny_server():
    s = ServerProcess("--hf=" + os.path.join(DATA, "gpt2-tiny", "hf"), "--slots=8", "--threads=2")
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="session")
def text_server(text_model):
    s = ServerProcess("--hf=" + text_model, "--slots=8", "--threads=2", "--model-name=small-gpt2")
    yield s
    assert s.stop() == 0

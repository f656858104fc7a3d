#!/usr/bin/env python3
"""Tiny random-weight GPT-2 folders, one per config flag or activation_function, with PyTorch's
logits (transformers, eager attention) for fixed ids: what tests/e2e/hf_flags_test.cpp compares
gptrt's Hugging Face import against.

    python3 tests/data/make_hf_flags.py tests/data/hf_flags

Each variant is a folder: config.json, model.safetensors, ids.npy (int64 [2, 7]), logits.npy.
"""
import json
import os
import sys

import numpy as np
import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

out = sys.argv[1]
base = dict(vocab_size=97, n_positions=32, n_embd=32, n_layer=3, n_head=4)
variants = {
    "gelu_new": {},
    "inverse_layer_idx": {"scale_attn_by_inverse_layer_idx": True},
    "reorder_and_upcast": {"reorder_and_upcast_attn": True},
    "no_attn_scale": {"scale_attn_weights": False},
    "untied_head": {"tie_word_embeddings": False},
    "n_inner_48_eps_1e-3": {"n_inner": 48, "layer_norm_epsilon": 1e-3},
}
for act in ["gelu", "gelu_fast", "gelu_pytorch_tanh", "gelu_python", "gelu_accurate", "quick_gelu",
            "relu", "relu6", "silu", "swish", "sigmoid", "tanh", "linear"]:
    variants["act_" + act] = {"activation_function": act}

torch.manual_seed(0)
rng = np.random.default_rng(0)
ids = rng.integers(0, base["vocab_size"], size=(2, 7), dtype=np.int64)
for name, flags in variants.items():
    cfg = GPT2Config(**base, **flags)
    cfg._attn_implementation = "eager"
    torch.manual_seed(len(name))
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        # Larger than the default init so activations reach the nonlinearities' curved parts.
        for p in model.parameters():
            p.mul_(3.0)
        logits = model(torch.from_numpy(ids)).logits.numpy()
    d = os.path.join(out, name)
    model.save_pretrained(d, safe_serialization=True)
    np.save(os.path.join(d, "ids.npy"), ids)
    np.save(os.path.join(d, "logits.npy"), logits.astype(np.float32))
    for extra in ["generation_config.json"]:
        if os.path.exists(os.path.join(d, extra)):
            os.remove(os.path.join(d, extra))
    print("wrote", name, logits.shape, float(np.abs(logits).max()))
with open(os.path.join(out, "VERSIONS"), "w") as f:
    f.write("torch %s, transformers %s\n" % (torch.__version__, transformers.__version__))

#!/usr/bin/env python3
"""The recipe's PyTorch script: the Hugging Face model (eager attention), forward passes and
`generate` with its KV cache (greedy, exactly N new tokens).

    python3 examples/recipe/run_pytorch.py --hf distilgpt2/ [--device cuda --precision fp16]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def run(a):
    try:
        import torch
        from transformers import GPT2LMHeadModel
    except ImportError:
        return common.missing("PyTorch with transformers", "pip install torch transformers")
    if not a.hf:
        return common.missing("a Hugging Face folder for PyTorch", "give --hf")
    if a.device == "cuda" and not torch.cuda.is_available():
        return common.missing("a CUDA device for PyTorch", "run on a machine with an NVIDIA GPU")
    if a.threads:
        torch.set_num_threads(a.threads)
    dtype = torch.float16 if a.precision == "fp16" else torch.float32
    model = GPT2LMHeadModel.from_pretrained(a.hf, attn_implementation="eager", torch_dtype=dtype)
    model = model.to(a.device).eval()
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    rows = []
    with torch.inference_mode():
        for b, s in common.shapes(a.shapes):
            ids, mask = (torch.from_numpy(x).to(a.device) for x in common.inputs(b, s))
            r = common.timed(lambda: model(input_ids=ids, attention_mask=mask).logits, a.runs, a.min_seconds,
                             sync)
            rows.append({"framework": "pytorch", "kind": "forward", "batch": b, "seq": s, **r})
        for b, n in common.shapes(a.generate):
            ids, mask = (torch.from_numpy(x).to(a.device) for x in common.inputs(b, common.PROMPT))
            r = common.timed(lambda: model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n,
                                                    min_new_tokens=n, do_sample=False, pad_token_id=0),
                             max(3, a.runs // 4), a.min_seconds, sync)
            rows.append({"framework": "pytorch", "kind": "generate", "batch": b, "new_tokens": n, **r})
    return rows


if __name__ == "__main__":
    args = common.parse_args(__doc__)
    common.print_tables(f"PyTorch ({args.device}, {args.precision})", run(args))

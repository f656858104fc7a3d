#!/usr/bin/env python3
"""Runs the peers of gptrt on the inputs `gptrt bench` wrote, and appends one JSON row per
(framework, precision, shape) to WORK/peers.json. Also writes WORK/inputs/BxS/reference.npy:
PyTorch FP32 logits, the accuracy reference of every row.

Peers: PyTorch eager (FP32, FP16 on CUDA), torch.compile with CUDA graphs (CUDA), ONNX Runtime
(CPU provider; CUDA provider with IO binding where present), OpenVINO (CPU, from the ONNX file:
its FP32 hint and its default, BF16 where the CPU has it), llama.cpp through llama-cpp-python
(generation at batch 1 from GGUF F32/F16/Q8_0 files made with the converter llama.cpp ships,
bench/serve/to_gguf.py), CTranslate2 (converted from the Hugging Face folder; float32, int8,
bfloat16; forward logits and generation), TensorRT (Python API, where installed). A peer that is missing gets a row saying so, never silence.
"""
import argparse
import copy
import importlib
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import accuracy, summarize, time_it  # noqa: E402


def progress(i, n, label):
    width = 30
    done = int(width * i / max(n, 1))
    sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {i}/{n} {label:<50}")
    sys.stderr.flush()
    if i == n:
        sys.stderr.write("\n")


def load_inputs(work, shape):
    d = os.path.join(work, "inputs", f"{shape[0]}x{shape[1]}")
    return np.load(os.path.join(d, "input_ids.npy")), np.load(os.path.join(d, "attention_mask.npy")), d


def parse_grid(text):
    out = []
    for item in filter(None, (text or "").split(",")):
        b, s = item.lower().split("x")
        out.append((int(b), int(s)))
    return out


class Rows:
    def __init__(self, path, device, threads):
        self.path, self.device, self.threads, self.rows = path, device, threads, []

    def add(self, framework, precision, kind, batch, seq, **kw):
        row = {"framework": framework, "precision": precision, "device": self.device, "kind": kind,
               "batch": batch, "seq_len": seq, "threads": self.threads}
        row.update(kw)
        self.rows.append(row)

    def missing(self, framework, precision, kind, grid, reason):
        for b, s in grid:
            self.add(framework, precision, kind, b, s, status=reason, median_ms=None, p90_ms=None, p99_ms=None,
                     max_abs_diff=None, top1_agreement=None, accuracy_note=reason)

    def save(self):
        with open(self.path, "w") as f:
            json.dump(self.rows, f, indent=1)


def with_accuracy(logits, work_dir, mask):
    ref_path = os.path.join(work_dir, "reference.npy")
    if not os.path.exists(ref_path):
        return {"max_abs_diff": None, "top1_agreement": None, "accuracy_note": "no PyTorch FP32 reference (needs --hf and torch)"}
    return accuracy(logits, np.load(ref_path), mask)


def gen_prompt(a, g, b, s):
    """The generation prompt gptrt bench wrote for this shape (the same for every framework),
    else random ids."""
    path = os.path.join(a.work, "inputs", f"gen_{b}x{s}", "prompt_ids.npy")
    if os.path.exists(path):
        return np.load(path).astype(np.int64)
    return g.integers(0, a.vocab, size=(b, a.prompt_len)).astype(np.int64)


def ct2_model(a, ct2):
    """The Hugging Face folder converted by CTranslate2's own converter into WORK/ctranslate2 (once).
    A folder without a tokenizer (`gptrt make-model`'s) borrows GPT-2's from tests/data/tokenizer
    in a temporary copy: the converter writes the vocabulary from it."""
    import shutil
    import tempfile
    out = os.path.join(a.work, "ctranslate2")
    if os.path.exists(os.path.join(out, "model.bin")):
        return out
    tokenizer = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "tokenizer")
    with tempfile.TemporaryDirectory() as tmp:
        for name in os.listdir(a.hf):
            os.symlink(os.path.abspath(os.path.join(a.hf, name)), os.path.join(tmp, name))
        if not any(os.path.exists(os.path.join(tmp, n)) for n in ("tokenizer.json", "vocab.json")):
            for n in ("tokenizer.json", "vocab.json", "merges.txt"):
                shutil.copy(os.path.join(tokenizer, n), os.path.join(tmp, n))
        from ctranslate2.converters import TransformersConverter
        TransformersConverter(tmp).convert(out, quantization="float32", force=True)
    return out


def openvino_matmul_kernels(ov, onnx, config, feeds):
    """The kernels OpenVINO's matrix products ran on (its profiling counters, e.g.
    "brgemm_avx512_amx_bf16"), from a second compiled copy with counters on, so that the timed one
    runs without them."""
    compiled = ov.Core().compile_model(onnx, "CPU", dict(config, PERF_COUNT=True))
    req = compiled.create_infer_request()
    req.infer(feeds)
    found = sorted({p.exec_type for p in req.get_profiling_info()
                    if p.node_type in ("FullyConnected", "MatMul") and p.status == p.Status.EXECUTED})
    return ", ".join(found) or "none reported"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--onnx")
    ap.add_argument("--hf")
    ap.add_argument("--shapes", default="")
    ap.add_argument("--generate", default="")
    ap.add_argument("--frameworks", default="pytorch,torch.compile,onnxruntime,openvino,llama.cpp,ctranslate2,tensorrt")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--min-runs", type=int, default=100)
    ap.add_argument("--min-seconds", type=float, default=3.0)
    ap.add_argument("--prompt-len", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=1000, help="token ids of generation prompts are below this")
    ap.add_argument("--onednn-max-isa", default="",
                    help="ONEDNN_MAX_CPU_ISA for the peers that use oneDNN (OpenVINO, PyTorch): set before they load")
    a = ap.parse_args()
    if a.onednn_max_isa:  # oneDNN reads it once, at its first dispatch: before torch or openvino loads
        os.environ["ONEDNN_MAX_CPU_ISA"] = a.onednn_max_isa
    grid, gen_grid = parse_grid(a.shapes), parse_grid(a.generate)
    frameworks = set(a.frameworks.split(","))
    rows = Rows(os.path.join(a.work, "peers.json"), a.device, a.threads)
    steps = []

    torch = None
    try:
        import torch as _torch
        torch = _torch
        if a.threads:
            torch.set_num_threads(a.threads)
    except ImportError:
        pass

    # --- PyTorch (also the accuracy reference) ---
    model = None
    if torch is not None and a.hf:
        from transformers import GPT2LMHeadModel
        model = GPT2LMHeadModel.from_pretrained(a.hf, attn_implementation="eager").eval()
        dev = torch.device("cuda" if a.device == "cuda" else "cpu")
        model.to(dev)
        for b, s in grid:  # FP32 reference logits, always on the same weights and inputs
            ids, mask, d = load_inputs(a.work, (b, s))
            with torch.no_grad():
                ref = model(input_ids=torch.tensor(ids, device=dev), attention_mask=torch.tensor(mask, device=dev), use_cache=False).logits
            np.save(os.path.join(d, "reference.npy"), ref.float().cpu().numpy())
    precisions = ["fp32", "fp16"] if a.device == "cuda" else ["fp32"]
    # One model object per precision: converting in place would change what compiled graphs captured.
    models = {}
    if model is not None:
        models["fp32"] = model
        if "fp16" in precisions:
            models["fp16"] = copy.deepcopy(model).half()
    for fw in ("pytorch", "torch.compile"):
        if fw not in frameworks:
            continue
        if torch is None:
            rows.missing(fw, "fp32", "forward", grid, "not installed (pip install torch transformers)")
        elif model is None:
            rows.missing(fw, "fp32", "forward", grid, "not available: needs --hf (the weights as a Hugging Face folder)")
        elif fw == "pytorch":
            steps += [("pytorch", p, shape) for p in precisions for shape in grid]
            steps += [("pytorch-generate", p, shape) for p in precisions for shape in gen_grid]
        elif a.device == "cuda":
            steps += [("torch.compile", p, shape) for p in precisions for shape in grid]
        else:
            rows.missing(fw, "fp32", "forward", grid, "not run: CUDA graphs need --device cuda")
    ort = None
    if "onnxruntime" in frameworks:
        try:
            import onnxruntime as _ort
            ort = _ort
        except ImportError:
            rows.missing("onnxruntime", "fp32", "forward", grid, "not installed (pip install onnxruntime)")
        if ort is not None and not a.onnx:
            rows.missing("onnxruntime", "fp32", "forward", grid, "not available: needs --onnx")
            ort = None
        if ort is not None:
            steps += [("onnxruntime-cpu", "fp32", shape) for shape in grid]
            steps += [("onnxruntime-cpu-generate", "fp32", shape) for shape in gen_grid]
            if a.device == "cuda":
                if "CUDAExecutionProvider" in ort.get_available_providers():
                    steps += [("onnxruntime-cuda", "fp32", shape) for shape in grid]
                else:
                    rows.missing("onnxruntime-cuda", "fp32", "forward", grid,
                                 "not installed (this onnxruntime has no CUDA provider: pip install onnxruntime-gpu)")
    def cpu_peer(module, row, precision, kind, shapes, pip, have_model, model_flag):
        """A CPU peer's module, or None after a row saying why it does not run."""
        try:
            found = importlib.import_module(module)
        except ImportError:
            rows.missing(row, precision, kind, shapes, f"not installed (pip install {pip})")
            return None
        if not have_model or a.device != "cpu":
            rows.missing(row, precision, kind, shapes,
                         f"not run: needs {model_flag}" if not have_model else "not run: a CPU peer (--device cpu)")
            return None
        return found

    ov = llama = ct2 = None
    if "openvino" in frameworks:
        ov = cpu_peer("openvino", "openvino-cpu", "fp32", "forward", grid, "openvino", a.onnx, "--onnx")
        if ov is not None:  # its FP32 hint, then what it picks itself (BF16 on AVX512-BF16/AMX CPUs)
            steps += [("openvino-cpu", p, shape) for p in ("fp32", "default") for shape in grid]
    if "llama.cpp" in frameworks:
        llama = cpu_peer("llama_cpp", "llama.cpp-cpu", "q8_0", "generate" if gen_grid else "forward",
                         gen_grid or grid, "llama-cpp-python", a.hf, "--hf (converted to GGUF)")
        if llama is not None and not gen_grid:
            rows.missing("llama.cpp-cpu", "q8_0", "forward", grid, "not run: llama.cpp's rows are generation (--generate 1xN)")
        if llama is not None:  # batch 1: llama-cpp-python's Llama decodes one sequence
            steps += [("llama.cpp-cpu", p, shape) for p in ("f32", "f16", "q8_0") for shape in gen_grid
                      if shape[0] == 1]
            others = [shape for shape in gen_grid if shape[0] != 1]
            if others:
                rows.missing("llama.cpp-cpu", "q8_0", "generate", others,
                             "not run: llama-cpp-python's Llama decodes one sequence at a time (batch 1 only)")
    if "ctranslate2" in frameworks:
        ct2 = cpu_peer("ctranslate2", "ctranslate2-cpu", "int8", "forward", grid, "ctranslate2", a.hf,
                       "--hf (converted by CTranslate2)")
        if ct2 is not None:  # its compute types on the same converted (float32) model
            steps += [("ctranslate2-cpu", p, shape) for p in ("float32", "int8", "bfloat16") for shape in grid]
            steps += [("ctranslate2-cpu-generate", p, shape) for p in ("float32", "int8", "bfloat16") for shape in gen_grid]
    if "tensorrt" in frameworks:
        try:
            import tensorrt  # noqa: F401
            if a.device != "cuda" or torch is None or not torch.cuda.is_available() or not a.onnx:
                rows.missing("tensorrt", a.precision, "forward", grid, "not run: needs --device cuda, torch with CUDA and --onnx")
            else:
                steps += [("tensorrt", p, shape) for p in precisions for shape in grid]
        except ImportError:
            rows.missing("tensorrt", a.precision, "forward", grid, "not installed (pip install tensorrt, NVIDIA GPU only)")

    sessions = {}
    compiled = {}
    step_file = os.path.join(a.work, "peers_step.json")
    for i, (fw, prec, (b, s)) in enumerate(steps):
        progress(i, len(steps), f"{fw} {prec} {b}x{s}")
        # The step in flight, for gptrt bench to name if a peer takes this process down (a crash
        # in a native library leaves no Python exception to catch).
        generate = fw.endswith("-generate") or fw == "llama.cpp-cpu"
        with open(step_file, "w") as f:
            json.dump({"framework": fw[:-len("-generate")] if fw.endswith("-generate") else fw, "precision": prec,
                       "kind": "generate" if generate else "forward", "batch": b, "seq_len": s}, f)
        if fw in ("pytorch", "torch.compile"):
            ids, mask, d = load_inputs(a.work, (b, s))
            dev = next(model.parameters()).device
            m = models[prec]
            t_ids, t_mask = torch.tensor(ids, device=dev), torch.tensor(mask, device=dev)
            sync = torch.cuda.synchronize if dev.type == "cuda" else None
            build_ms = None
            if fw == "torch.compile":
                key = prec
                if key not in compiled:
                    compiled[key] = torch.compile(lambda i_, m_, mod=m: mod(input_ids=i_, attention_mask=m_, use_cache=False).logits,
                                                  mode="reduce-overhead")
                fn_c = compiled[key]
                t0 = time.perf_counter()
                with torch.no_grad():
                    for _ in range(3):
                        fn_c(t_ids, t_mask)
                    sync()
                build_ms = (time.perf_counter() - t0) * 1e3

                def fn():
                    with torch.no_grad():
                        return fn_c(t_ids, t_mask)
            else:
                def fn():
                    with torch.no_grad():
                        return m(input_ids=t_ids, attention_mask=t_mask, use_cache=False).logits
            samples = time_it(fn, a.min_runs, a.min_seconds, sync=sync)
            logits = fn().float().cpu().numpy()
            rows.add(fw, prec, "forward", b, s, **summarize(samples), build_ms=build_ms, **with_accuracy(logits, d, mask))
        elif fw == "pytorch-generate":
            g = np.random.default_rng(b * 1000 + s)
            dev = next(model.parameters()).device
            m = models[prec]
            prompt = torch.tensor(gen_prompt(a, g, b, s), device=dev)
            sync = torch.cuda.synchronize if dev.type == "cuda" else None

            def fn():
                with torch.no_grad():
                    return m.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=s,
                                      min_new_tokens=s, pad_token_id=0, use_cache=True)
            samples = time_it(fn, 5, a.min_seconds, warmup=2, sync=sync)
            st = summarize(samples)
            rows.add("pytorch", prec, "generate", b, s, **st, ms_per_token=st["median_ms"] / s,
                     max_abs_diff=None, top1_agreement=None, accuracy_note="generation: see forward rows")
        elif fw == "tensorrt":
            # The recipe's path: TensorRT's ONNX parser on the same file, one profile spanning the
            # grid, the engine built once per precision (build time reported apart).
            import tensorrt as trt
            key = ("tensorrt", prec)
            if key not in sessions:
                logger = trt.Logger(trt.Logger.WARNING)
                builder = trt.Builder(logger)
                network = builder.create_network(0)
                parser = trt.OnnxParser(network, logger)
                with open(a.onnx, "rb") as f:
                    if not parser.parse(f.read()):
                        raise RuntimeError("TensorRT could not parse the ONNX file: " +
                                           "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
                config = builder.create_builder_config()
                if prec == "fp16":
                    config.set_flag(trt.BuilderFlag.FP16)
                profile = builder.create_optimization_profile()
                max_b, max_s = max(x[0] for x in grid), max(x[1] for x in grid)
                for name in ("input_ids", "attention_mask"):
                    profile.set_shape(name, (1, 1), grid[0], (max_b, max_s))
                config.add_optimization_profile(profile)
                t0 = time.perf_counter()
                plan = builder.build_serialized_network(network, config)
                engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
                sessions[key] = (engine.create_execution_context(), (time.perf_counter() - t0) * 1e3)
            tctx, build_ms = sessions[key]
            ids, mask, d = load_inputs(a.work, (b, s))
            t_ids, t_mask = torch.tensor(ids, device="cuda"), torch.tensor(mask, device="cuda")
            tctx.set_input_shape("input_ids", tuple(ids.shape))
            tctx.set_input_shape("attention_mask", tuple(mask.shape))
            out_shape = tuple(tctx.get_tensor_shape("logits"))
            out_dtype = torch.float16 if tctx.engine.get_tensor_dtype("logits") == trt.DataType.HALF else torch.float32
            t_out = torch.empty(out_shape, dtype=out_dtype, device="cuda")
            for name, t in (("input_ids", t_ids), ("attention_mask", t_mask), ("logits", t_out)):
                tctx.set_tensor_address(name, t.data_ptr())
            stream = torch.cuda.current_stream().cuda_stream

            def fn():
                tctx.execute_async_v3(stream)
            samples = time_it(fn, a.min_runs, a.min_seconds, sync=torch.cuda.synchronize)
            torch.cuda.synchronize()
            rows.add("tensorrt", prec, "forward", b, s, **summarize(samples), build_ms=build_ms,
                     **with_accuracy(t_out.float().cpu().numpy(), d, mask))
        elif fw.startswith("ctranslate2-cpu"):
            key = ("ctranslate2", prec)
            if key not in sessions:
                try:
                    model_dir = ct2_model(a, ct2)
                    t0 = time.perf_counter()
                    generator = ct2.Generator(model_dir, device="cpu", compute_type=prec,
                                              intra_threads=a.threads or 0)
                    sessions[key] = (generator, (time.perf_counter() - t0) * 1e3,
                                     json.load(open(os.path.join(model_dir, "vocabulary.json"))))
                except Exception as e:  # (its converter or loader: the row says why)
                    rows.missing("ctranslate2-cpu", prec, "forward", [(b, s)], f"not run: {type(e).__name__}: {e}"[:300])
                    continue
            generator, build_ms, vocab_tokens = sessions[key]
            label = {"float32": "fp32", "bfloat16": "bf16"}.get(prec, prec)
            if fw.endswith("-generate"):
                g = np.random.default_rng(b * 1000 + s)
                prompt = [[vocab_tokens[int(t)] for t in row] for row in gen_prompt(a, g, b, s)]

                def fn():  # greedy, exactly s new tokens (min_length = max_length, no end token)
                    return generator.generate_batch(prompt, max_length=s, min_length=s, sampling_topk=1,
                                                    include_prompt_in_result=False, end_token=[])
                samples = time_it(fn, 5, a.min_seconds, warmup=1)
                st = summarize(samples)
                rows.add("ctranslate2-cpu", label, "generate", b, s, **st, ms_per_token=st["median_ms"] / s,
                         build_ms=build_ms, max_abs_diff=None, top1_agreement=None, accuracy_note="KV cache")
                continue
            ids, mask, d = load_inputs(a.work, (b, s))
            batch_ids = ids.tolist()

            def fn():
                return generator.forward_batch(batch_ids)
            samples = time_it(fn, a.min_runs, a.min_seconds)
            logits = np.array(fn(), dtype=np.float32)
            rows.add("ctranslate2-cpu", label, "forward", b, s, **summarize(samples), build_ms=build_ms,
                     **with_accuracy(logits, d, mask))
        elif fw == "llama.cpp-cpu":
            key = ("llama.cpp", prec)
            if key not in sessions:
                gguf = os.path.join(a.work, f"model-{prec}.gguf")
                if not os.path.exists(gguf):  # llama.cpp's own converter (needs torch and its gguf-py)
                    import subprocess
                    r = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "serve",
                                                                     "to_gguf.py"), "--hf", a.hf, "--out", gguf,
                                        "--outtype", prec], capture_output=True, text=True)
                    if r.returncode != 0:
                        rows.missing(fw, prec, "generate", [(b, s)], "not run: the GGUF conversion failed: " +
                                     (r.stderr.strip().splitlines() or ["?"])[-1])
                        continue
                t0 = time.perf_counter()
                sessions[key] = (llama.Llama(model_path=gguf, n_threads=a.threads or None,
                                             n_threads_batch=a.threads or None, n_ctx=a.prompt_len + 512,
                                             n_batch=512, verbose=False), (time.perf_counter() - t0) * 1e3)
            llm, build_ms = sessions[key]
            g = np.random.default_rng(b * 1000 + s)
            prompt = [int(t) for t in gen_prompt(a, g, b, s)[0]]

            def fn():  # greedy, the EOS ignored: exactly s new tokens, KV cache from the prompt on
                out = []
                for token in llm.generate(prompt, top_k=1, temp=0.0, reset=True):
                    out.append(token)
                    if len(out) == s:
                        break
                return out
            samples = time_it(fn, 5, a.min_seconds, warmup=1)
            st = summarize(samples)
            rows.add(fw, prec, "generate", b, s, **st, ms_per_token=st["median_ms"] / s, build_ms=build_ms,
                     max_abs_diff=None, top1_agreement=None, accuracy_note="GGUF " + prec + " (llama.cpp's converter)")
        elif fw == "openvino-cpu":
            key = ("openvino", prec)
            ids, mask, d = load_inputs(a.work, (b, s))
            feeds = {"input_ids": ids, "attention_mask": mask}
            if key not in sessions:
                config = {"PERFORMANCE_HINT": "LATENCY"}
                if a.threads:
                    config["INFERENCE_NUM_THREADS"] = a.threads
                if prec == "fp32":
                    config["INFERENCE_PRECISION_HINT"] = "f32"
                t0 = time.perf_counter()
                try:
                    compiled_model = ov.Core().compile_model(a.onnx, "CPU", config)
                    req = compiled_model.create_infer_request()
                    build_ms = (time.perf_counter() - t0) * 1e3
                    hint = compiled_model.get_property("INFERENCE_PRECISION_HINT")  # (an ov.Type)
                    chosen = hint.to_string() if hasattr(hint, "to_string") else str(hint)
                    chosen = {"f32": "fp32", "f16": "fp16"}.get(chosen, chosen)
                    label = "fp32" if prec == "fp32" else f"{chosen} (its default)"
                    sessions[key] = (req, build_ms, label, openvino_matmul_kernels(ov, a.onnx, config, feeds))
                except RuntimeError as e:  # e.g. its default picks BF16 from the CPU's flags, which a cap leaves no kernels for
                    cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
                    detail = (str(e).strip().splitlines() or ["?"])[-1]
                    sessions[key] = ("not run: OpenVINO could not compile the model" +
                                     (f" under ONEDNN_MAX_CPU_ISA={cap}" if cap else "") + ": " + detail)
            if isinstance(sessions[key], str):
                rows.missing(fw, "fp32" if prec == "fp32" else "default", "forward", [(b, s)], sessions[key])
                continue
            req, build_ms, label, kernels = sessions[key]

            def fn():
                req.infer(feeds)
                return req
            samples = time_it(fn, a.min_runs, a.min_seconds)
            fn()
            logits = np.array(req.get_output_tensor(0).data, dtype=np.float32)
            rows.add(fw, label, "forward", b, s, **summarize(samples), build_ms=build_ms, kernels=kernels,
                     **with_accuracy(logits, d, mask))
        elif fw.startswith("onnxruntime"):
            if fw not in sessions:
                so = ort.SessionOptions()
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                if a.threads:
                    so.intra_op_num_threads = a.threads
                providers = ["CUDAExecutionProvider"] if fw == "onnxruntime-cuda" else ["CPUExecutionProvider"]
                t0 = time.perf_counter()
                sessions[fw] = (ort.InferenceSession(a.onnx, so, providers=providers), (time.perf_counter() - t0) * 1e3)
            sess, build_ms = sessions[fw]
            if fw.endswith("-generate"):
                g = np.random.default_rng(b * 1000 + s)
                prompt = gen_prompt(a, g, b, s)

                def fn():  # the recipe's loop: re-feed the whole sequence every token, no KV cache
                    seq = prompt
                    for _ in range(s):
                        logits = sess.run(None, {"input_ids": seq, "attention_mask": np.ones_like(seq)})[0]
                        seq = np.concatenate([seq, logits[:, -1].argmax(-1)[:, None]], axis=1)
                    return seq
                samples = time_it(fn, 5, a.min_seconds, warmup=1)
                st = summarize(samples)
                rows.add("onnxruntime-cpu", prec, "generate", b, s, **st, ms_per_token=st["median_ms"] / s, build_ms=build_ms,
                         max_abs_diff=None, top1_agreement=None, accuracy_note="re-feeds the whole sequence each token (no KV cache)")
                continue
            ids, mask, d = load_inputs(a.work, (b, s))
            feeds = {"input_ids": ids, "attention_mask": mask}
            if fw == "onnxruntime-cuda":
                # IO binding: inputs and logits stay on the GPU, as a deployment would keep them.
                io = sess.io_binding()
                for name, arr in feeds.items():
                    io.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(arr, "cuda", 0))
                io.bind_output("logits", "cuda")

                def fn():
                    sess.run_with_iobinding(io)
                    return io
                samples = time_it(fn, a.min_runs, a.min_seconds, sync=io.synchronize_outputs)
                logits = io.copy_outputs_to_cpu()[0]
            else:
                def fn():
                    return sess.run(None, feeds)[0]
                samples = time_it(fn, a.min_runs, a.min_seconds)
                logits = fn()
            rows.add(fw, prec, "forward", b, s, **summarize(samples), build_ms=build_ms, **with_accuracy(logits, d, mask))
        rows.save()
    progress(len(steps), len(steps), "peers done")
    rows.save()
    if os.path.exists(step_file):
        os.remove(step_file)
    versions = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "onnxruntime", "openvino", "llama_cpp", "ctranslate2", "numpy"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    if torch is not None and torch.cuda.is_available():
        versions["gpu"] = torch.cuda.get_device_name(0)
    with open(os.path.join(a.work, "peer_versions.json"), "w") as f:
        json.dump(versions, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())

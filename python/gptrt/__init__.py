"""gptrt: a C++ inference engine for GPT-2-family models, from Python.

    import gptrt, numpy as np
    engine = gptrt.build(onnx="distilgpt2.onnx", backend="cpu", precision="fp32")
    engine.save("distilgpt2.engine")
    engine = gptrt.load("distilgpt2.engine")
    ctx = engine.create_context()
    logits = ctx.run(input_ids, attention_mask)        # NumPy in, NumPy out

    tok = gptrt.Tokenizer.from_file("distilgpt2/")       # tokenizer.json or vocab.json + merges.txt
    out = gptrt.generate(engine, [tok.encode("Hello")], max_new_tokens=20)
    for token in gptrt.stream(engine, tok.encode("Hello"), max_new_tokens=20): ...

    async with gptrt.AsyncEngine(engine, slots=8) as ae:   # the server's continuous batching
        async for token in ae.generate(tok.encode("Hello"), max_new_tokens=20): ...

Errors are gptrt.Error (RuntimeError) with gptrt's messages; shapes outside every profile raise
gptrt.ShapeError and bad values (token ids, dtypes) gptrt.InputError (both also ValueError).
"""
from __future__ import annotations

import asyncio
import sys
import queue
import threading
from typing import AsyncIterator, Iterator, Mapping, Optional, Sequence

from . import _gptrt
from ._gptrt import (Error, ExecutionContext, GenerationConfig, InputError, Network, ShapeError,  # noqa: F401
                     Tokenizer)

__version__ = _gptrt.version()
__all__ = ["build", "load", "Engine", "ExecutionContext", "Network", "Tokenizer", "generate", "stream",
           "AsyncEngine", "GenerationConfig", "Error", "ShapeError", "InputError", "version"]


def version() -> str:
    """gptrt's version and the commit it was built from, e.g. '0.1.0 (commit 48c98a5b96f4)'."""
    return f"{_gptrt.version()} (commit {_gptrt.build_commit()})"


class Engine:
    """A compiled model for one target: backend (cpu, cuda, reference), ISA or SM, precision."""

    def __init__(self, native: _gptrt.Engine):
        self._native = native

    def save(self, path: str) -> None:
        """Writes the engine file (on failure no file is left at `path`)."""
        self._native.save(str(path))

    def serialize(self) -> bytes:
        """The engine file's bytes."""
        return self._native.serialize()

    def inspect(self) -> dict:
        """Inputs, outputs, profiles (min, opt, max shapes per input), backend, target, precision."""
        return self._native.inspect()

    @property
    def backend(self) -> str:
        return self._native.backend

    @property
    def precision(self) -> str:
        return self._native.precision

    def create_context(self, threads: int = 0) -> "Context":
        """Per-run state (one per thread); `threads` = 0 uses every core."""
        return Context(self, _gptrt.ExecutionContext(self._native, threads))

    def __repr__(self) -> str:
        return f"<gptrt.Engine {self.backend} {self.precision} {self._native.target}>"


def _on_gpu(value) -> bool:
    """True for a DLPack tensor in CUDA memory (DLPack device kDLCUDA = 2, kDLCUDAManaged = 13)."""
    device = getattr(value, "__dlpack_device__", None)
    if device is None or isinstance(value, type):
        return False
    try:
        return device()[0] in (2, 13)
    except Exception:  # (an object whose __dlpack_device__ fails is treated as a host array)
        return False


class Context:
    """Runs forward passes of an engine: NumPy arrays in, NumPy arrays out."""

    def __init__(self, engine: Engine, native: _gptrt.ExecutionContext):
        self.engine = engine
        self._native = native
        declared = engine.inspect()["inputs"]
        self._inputs = [i["name"] for i in declared]
        self._dtypes = {i["name"]: i["dtype"] for i in declared}

    def _feed(self, name, array):
        # Integer inputs of the other width are converted to the engine's (int32 <-> int64; a
        # value that does not fit int32 is left for the engine to refuse by name).
        import numpy as np  # (not at import: stub generation at build time runs without it)

        if not isinstance(array, np.ndarray):
            array = np.asarray(array)  # (no copy for NumPy-compatible and DLPack CPU tensors)
        want = self._dtypes.get(name)
        if want in ("int64", "int32") and hasattr(array, "dtype") and array.dtype.kind in "iu" \
                and array.dtype != np.dtype(want):
            if want == "int64" or (array.size == 0 or (array.min() >= -2**31 and array.max() < 2**31)):
                return array.astype(want)
        return array

    def run(self, *args, out=None, **named):
        """ctx.run(input_ids, attention_mask) -> logits, or ctx.run({"input_ids": ..., ...}) ->
        {output name: array}. int64 or int32 ids (converted to the engine's input type); the GIL
        is released while the engine runs.

        On a cuda engine, tensors in GPU memory (torch.Tensor on "cuda:0", or any DLPack tensor)
        run without a host copy: the outputs are torch tensors on the same GPU (or `out=`, a
        tensor or a list of them, DLPack tensors of the right shape, written in place), ordered
        after the work queued on torch's current stream."""
        mapping = len(args) == 1 and isinstance(args[0], Mapping) and not named
        if mapping:
            feeds = dict(args[0])
        else:
            if len(args) > len(self._inputs):
                raise InputError(f"run: the engine has {len(self._inputs)} inputs ({', '.join(self._inputs)}), "
                                 f"{len(args)} arrays were given")
            feeds = dict(zip(self._inputs, args))
            feeds.update(named)
        if any(_on_gpu(v) for v in feeds.values()) or out is not None:
            result = self._run_device(feeds, out)
        else:
            result = self._native.run({k: self._feed(k, v) for k, v in feeds.items()})
        return result if mapping or len(result) != 1 else next(iter(result.values()))

    def _run_device(self, feeds, out):
        # Inputs and outputs in GPU memory (DLPack), nothing through the host.
        if self.engine.backend != "cuda":
            raise InputError(f"a tensor in GPU memory was given to a {self.engine.backend} engine, which "
                             "runs on the host: pass tensor.cpu(), or build the engine with backend='cuda'")
        torch = sys.modules.get("torch")  # (a torch tensor means torch is imported already)
        for name, v in feeds.items():
            if not _on_gpu(v):
                raise InputError(f"input '{name}' is in host memory while other inputs are on the GPU: "
                                 "pass all of them on the GPU, or all on the host")
            want = self._dtypes.get(name)
            if torch is not None and isinstance(v, torch.Tensor):
                if want in ("int64", "int32") and not v.dtype.is_floating_point and str(v.dtype) != "torch." + want:
                    v = v.to(getattr(torch, want))
                feeds[name] = v.contiguous()
        shapes = {k: tuple(v.shape) for k, v in feeds.items()}
        names = [o["name"] for o in self.engine.inspect()["outputs"]]
        if out is None:
            if torch is None:
                raise InputError("run: pass out= (a DLPack tensor in GPU memory for each output) when "
                                 "the inputs are not torch tensors")
            device = next(iter(feeds.values())).device
            out = [torch.empty(s, dtype=torch.float32, device=device)
                   for s in self._native.output_shapes(shapes)]
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        stream = 0
        if torch is not None and torch.cuda.is_available():
            stream = torch.cuda.current_stream().cuda_stream
        self._native.run_device(feeds, outs, stream)
        return dict(zip(names, outs))

    def last_timings(self):
        """(host-to-device, compute, device-to-host) milliseconds of the last run (cuda)."""
        return self._native.last_timings()


def build(onnx: Optional[str] = None, hf: Optional[str] = None,
          profiles: Optional[Sequence[Mapping[str, tuple]]] = None, precision: str = "fp32",
          backend: str = "cpu", max_batch: int = 64, max_seq_len: int = 0, keep_past: bool = True,
          cpu_isa: str = "", int8_group: int = 0) -> Engine:
    """Builds an engine from an ONNX file or a Hugging Face folder.

    profiles: [{"input_ids": (min, opt, max), "attention_mask": (min, opt, max)}, ...], each shape
    a tuple such as (1, 12), like trtexec's --minShapes/--optShapes/--maxShapes; default one profile
    of batch 1..max_batch and every length up to the model's positions.
    precision: fp32, fp16, bf16, tf32 or int8; backend: cpu, cuda or reference.
    int8_group: with precision="int8", a scale per output channel and this many weights along K
    (a multiple of 16 dividing every layer's K); 0 (default): per output channel."""
    if (onnx is None) == (hf is None):
        raise InputError("build: give exactly one of onnx= (an ONNX file) or hf= (a Hugging Face folder)")
    net = Network.from_onnx(str(onnx)) if onnx is not None else Network.from_hf(str(hf))
    return Engine(_gptrt._build(net, None if profiles is None else list(profiles), precision, backend,
                                max_batch, max_seq_len, keep_past, cpu_isa, int8_group))


def load(path: str) -> Engine:
    """Loads an engine file (refused, with the reason, if damaged or for another target)."""
    return Engine(_gptrt._load(str(path)))


def _config(max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed, eos_token_id):
    return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                            temperature=temperature if temperature > 0 else 1.0, top_k=top_k, top_p=top_p,
                            repetition_penalty=repetition_penalty, seed=seed,
                            eos_token_id=-1 if eos_token_id is None else eos_token_id)


def generate(engine: Engine, prompts: Sequence[Sequence[int]], max_new_tokens: int = 20, *,
             temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0,
             seed: int = 0, eos_token_id: Optional[int] = None, threads: int = 0) -> list:
    """New token ids for each prompt (token ids), as `gptrt generate` makes them: greedy at
    temperature 0, else sampled (top_k, top_p) with `seed`."""
    c = _config(max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed, eos_token_id)
    g = _gptrt.Generator(engine._native, threads)
    ids, _ = g.generate([list(map(int, p)) for p in prompts], c, None)
    return ids


def stream(engine: Engine, prompt: Sequence[int], max_new_tokens: int = 20, **sampling) -> Iterator[int]:
    """Yields one prompt's new token ids as they are made (generation runs on a thread)."""
    c = _config(max_new_tokens, sampling.pop("temperature", 0.0), sampling.pop("top_k", 0),
                sampling.pop("top_p", 1.0), sampling.pop("repetition_penalty", 1.0), sampling.pop("seed", 0),
                sampling.pop("eos_token_id", None))
    threads = sampling.pop("threads", 0)
    if sampling:
        raise InputError(f"stream: unknown arguments {sorted(sampling)}")
    q: queue.Queue = queue.Queue()
    stop = threading.Event()
    done = object()
    result = {}

    def run():
        try:
            g = _gptrt.Generator(engine._native, threads)
            g.generate([list(map(int, prompt))], c, lambda row, token: (q.put(token), not stop.is_set())[1])
        except BaseException as e:  # handed to the consumer
            result["error"] = e
        q.put(done)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        while (item := q.get()) is not done:
            yield item
        if "error" in result:
            raise result["error"]
    finally:
        stop.set()
        t.join()


class AsyncEngine:
    """gptrt serve's continuous-batching scheduler for asyncio applications and serving frameworks:
    requests with their own sampling and seeds join the running batch between decode steps.

        async with gptrt.AsyncEngine(engine, slots=8) as ae:
            async for token in ae.generate(prompt_ids, max_new_tokens=32): ...
    """

    def __init__(self, engine: Engine, slots: int = 8, max_queue: int = 64, prefill_chunk: int = 64,
                 threads: int = 0):
        self._s = _gptrt.Scheduler(engine._native, slots, max_queue, prefill_chunk, threads)

    async def generate(self, prompt: Sequence[int], max_new_tokens: int = 20, *, temperature: float = 0.0,
                       top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0, seed: int = 0,
                       eos_token_id: Optional[int] = None) -> AsyncIterator[int]:
        """Yields the request's new token ids as the scheduler makes them. Leaving the loop early
        cancels the request (its slot is freed within a step). A full queue raises gptrt.Error."""
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()
        c = _config(max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed, eos_token_id)
        finished = object()

        def on_token(token):
            loop.call_soon_threadsafe(q.put_nowait, token)
            return True

        def on_finish(reason, message):
            loop.call_soon_threadsafe(q.put_nowait, (finished, reason, message))

        handle = self._s.submit(list(map(int, prompt)), c, on_token, on_finish)
        if handle is None:
            raise Error("the scheduler's queue is full (max_queue); retry later")
        ended = False
        try:
            while True:
                item = await q.get()
                if isinstance(item, tuple) and item and item[0] is finished:
                    ended = True
                    if item[1] == "error":
                        raise Error(item[2])
                    return
                yield item
        finally:
            if not ended:
                handle.cancel()

    def stats(self) -> dict:
        """Requests running and waiting, and the slots."""
        return self._s.stats()

    def close(self) -> None:
        """Finishes the requests in flight and stops the scheduler."""
        self._s.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await asyncio.get_running_loop().run_in_executor(None, self.close)

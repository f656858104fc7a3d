"""Scale-out on Ray Serve: gptrt replicas behind Ray's HTTP proxy, each with its own engine and
the server's continuous-batching scheduler (gptrt.AsyncEngine), answering OpenAI's completions
route; Ray adds replicas as requests queue up and replaces one that dies.

    import ray, gptrt.ray_serve
    from ray import serve
    ray.init()                                  # or ray.init(address="auto") on a cluster
    serve.run(gptrt.ray_serve.deployment(hf="distilgpt2/", backend="cpu", threads=4, num_cpus=4,
                                         min_replicas=1, max_replicas=8), route_prefix="/")
    # POST http://HOST:8000/v1/completions {"prompt": [464, 2068], "max_tokens": 16}

One engine per replica: `num_cpus` CPU cores (cpu backend; give `threads` the same number) or
`num_gpus=1` (cuda backend). Each response names its replica in the `x-gptrt-replica` header.
"""
from __future__ import annotations

import json
import os
import socket
import time
from typing import Optional

import gptrt


def _error(status: int, message: str, param: Optional[str] = None):
    from starlette.responses import JSONResponse
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error" if status < 500 else
                                   "server_error", "param": param, "code": status}}, status_code=status)


class Replica:
    """One replica's engine, scheduler and completions route (what the deployment wraps)."""

    def __init__(self, engine_path=None, hf=None, onnx=None, backend="cpu", precision="fp32", slots=8,
                 threads=0, model_name="gptrt"):
        self.engine = gptrt.load(engine_path) if engine_path else gptrt.build(
            hf=hf, onnx=onnx, backend=backend, precision=precision)
        self.engine_async = gptrt.AsyncEngine(self.engine, slots=slots, threads=threads)
        folder = hf or os.path.dirname(onnx or engine_path or ".")
        self.tokenizer = None
        if any(os.path.exists(os.path.join(folder, f)) for f in ("tokenizer.json", "vocab.json")):
            self.tokenizer = gptrt.Tokenizer.from_file(folder)
        self.model_name = model_name
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def _prompt(self, body):
        p = body.get("prompt")
        if isinstance(p, str):
            if self.tokenizer is None:
                raise gptrt.InputError("the model has no tokenizer: send the prompt as token ids")
            return self.tokenizer.encode(p)
        if isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p):
            return p
        raise gptrt.InputError("'prompt' must be a string or a list of token ids")

    async def __call__(self, request):
        from starlette.responses import JSONResponse, StreamingResponse
        headers = {"x-gptrt-replica": self.name}
        path = request.url.path.rstrip("/")
        if request.method == "GET" and path.endswith("/v1/models"):
            return JSONResponse({"object": "list", "data": [{"id": self.model_name, "object": "model"}]},
                                headers=headers)
        if request.method != "POST" or not path.endswith("/v1/completions"):
            return _error(404, f"no route {request.method} {request.url.path} (POST /v1/completions, GET /v1/models)")
        try:
            body = await request.json()
        except ValueError as e:
            return _error(400, f"the body is not JSON: {e}")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object")
        try:
            prompt = self._prompt(body)
            max_tokens = body.get("max_tokens", 16)
            temperature = float(body.get("temperature", 1.0))
            if not isinstance(max_tokens, int) or max_tokens < 1:
                raise gptrt.InputError(f"'max_tokens' must be a positive integer, found {max_tokens!r}")
            args = dict(max_new_tokens=max_tokens, temperature=temperature, top_p=float(body.get("top_p", 1.0)),
                        top_k=int(body.get("top_k", 0)), seed=int(body.get("seed") or 0))
            stream = self.engine_async.generate(prompt, **args)
            first = await stream.__anext__()  # (bad ids and full queues are refused here)
        except StopAsyncIteration:
            first = None
        except gptrt.InputError as e:
            return _error(400, str(e), "prompt")
        except gptrt.Error as e:
            return _error(429 if "queue is full" in str(e) else 500, str(e))
        created, cid = int(time.time()), f"cmpl-{os.getpid()}-{id(stream)}"

        def chunk(tokens, finish=None):
            text = self.tokenizer.decode(tokens) if self.tokenizer and tokens else ""
            return {"id": cid, "object": "text_completion", "created": created, "model": self.model_name,
                    "choices": [{"index": 0, "text": text, "token_ids": tokens, "finish_reason": finish}]}

        if body.get("stream"):
            async def events():
                n = 0
                if first is not None:
                    n += 1
                    yield f"data: {json.dumps(chunk([first]))}\n\n"
                async for t in stream:
                    n += 1
                    yield f"data: {json.dumps(chunk([t]))}\n\n"
                yield f"data: {json.dumps(chunk([], 'length' if n >= max_tokens else 'stop'))}\n\n"
                yield "data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
        tokens = ([first] if first is not None else []) + [t async for t in stream]
        out = chunk(tokens, "length" if len(tokens) >= max_tokens else "stop")
        out["usage"] = {"prompt_tokens": len(prompt), "completion_tokens": len(tokens),
                        "total_tokens": len(prompt) + len(tokens)}
        return JSONResponse(out, headers=headers)


def deployment(engine_path: Optional[str] = None, hf: Optional[str] = None, onnx: Optional[str] = None, *,
               backend: str = "cpu", precision: str = "fp32", slots: int = 8, threads: int = 0,
               num_cpus: float = 1, num_gpus: float = 0, min_replicas: int = 1, max_replicas: int = 4,
               target_ongoing_requests: int = 8, model_name: str = "gptrt", name: str = "gptrt"):
    """A bound Ray Serve application of gptrt replicas (serve.run(...) it). Each replica builds or
    loads its own engine (`engine_path`, `hf` or `onnx`, reachable on every node) and holds
    `num_cpus` cores or `num_gpus` GPUs; Ray keeps between `min_replicas` and `max_replicas`, adding
    one when replicas average more than `target_ongoing_requests` requests in flight."""
    try:
        from ray import serve
    except ImportError:
        raise gptrt.Error("gptrt.ray_serve needs Ray Serve: pip install 'ray[serve]'") from None
    app = serve.deployment(
        Replica, name=name, ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus},
        max_ongoing_requests=4 * slots,
        autoscaling_config={"min_replicas": min_replicas, "max_replicas": max_replicas,
                            "target_ongoing_requests": target_ongoing_requests})
    return app.bind(engine_path=engine_path, hf=hf, onnx=onnx, backend=backend, precision=precision, slots=slots,
                    threads=threads, model_name=model_name)

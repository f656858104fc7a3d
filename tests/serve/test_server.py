"""`gptrt serve` against the real binary (issue 27), with the clients users have: the official
`openai` client (completions, streaming) and `tritonclient[http]` (KServe v2), plus raw HTTP for
what clients never send (malformed bodies, wrong types)."""
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import numpy as np
import pytest

from conftest import DATA, ServerProcess, cli

openai = pytest.importorskip("openai")


def client(server, key="none"):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


def generate_cli(model, prompt, n):
    r = subprocess.run([cli(), "generate", "--hf=" + model, "--prompt=" + prompt, f"--max-new-tokens={n}",
                        "--format=json"], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)["results"][0]


def test_openai_client_greedy_text_equals_gptrt_generate(text_server, text_model):
    c = client(text_server)
    r = c.completions.create(model="small-gpt2", prompt="The quick brown fox", max_tokens=12, temperature=0)
    want = generate_cli(text_model, "The quick brown fox", 12)
    assert want["text"].startswith("The quick brown fox")
    want_text = want["text"][len("The quick brown fox"):]  # generate prints prompt + new text
    assert r.choices[0].text == want_text
    assert r.usage.completion_tokens == len(want["generated_ids"])
    assert r.usage.prompt_tokens == len(want["prompt_ids"])
    # Streaming gives the same text, in pieces, and ends with a finish reason.
    pieces = list(c.completions.create(model="small-gpt2", prompt="The quick brown fox", max_tokens=12,
                                       temperature=0, stream=True))
    assert "".join(p.choices[0].text for p in pieces if p.choices) == want_text
    assert pieces[-1].choices[0].finish_reason == "length"


def test_completions_options(text_server):
    c = client(text_server)
    # A list of prompts, n choices each; the same seed gives the same samples.
    r1 = c.completions.create(model="small-gpt2", prompt=["Hello", "World"], n=2, max_tokens=5, seed=7,
                              temperature=1.0)
    r2 = c.completions.create(model="small-gpt2", prompt=["Hello", "World"], n=2, max_tokens=5, seed=7,
                              temperature=1.0)
    assert len(r1.choices) == 4
    assert [ch.text for ch in r1.choices] == [ch.text for ch in r2.choices]
    # Echo puts the prompt first; logprobs give one entry per token.
    e = c.completions.create(model="small-gpt2", prompt="Hello there", max_tokens=3, temperature=0, echo=True)
    assert e.choices[0].text.startswith("Hello there")
    lp = c.completions.create(model="small-gpt2", prompt="Hello there", max_tokens=3, temperature=0, logprobs=2)
    assert len(lp.choices[0].logprobs.token_logprobs) == 3
    assert all(v <= 0 for v in lp.choices[0].logprobs.token_logprobs)
    assert all(len(t) == 2 for t in lp.choices[0].logprobs.top_logprobs)
    # A stop string ends the text before it.
    full = c.completions.create(model="small-gpt2", prompt="Hello there", max_tokens=16, temperature=0).choices[0].text
    cut = full[3:6]
    stopped = c.completions.create(model="small-gpt2", prompt="Hello there", max_tokens=16, temperature=0, stop=[cut])
    assert stopped.choices[0].text == full[:full.find(cut)]
    assert stopped.choices[0].finish_reason == "stop"
    # Streamed, the text before the stop string arrives and nothing of the stop string does.
    pieces = list(c.completions.create(model="small-gpt2", prompt="Hello there", max_tokens=16, temperature=0,
                                       stop=[cut], stream=True))
    assert "".join(p.choices[0].text for p in pieces if p.choices) == full[:full.find(cut)]
    assert pieces[-1].choices[0].finish_reason == "stop"
    # Token-id prompts, and the extensions top_k and repetition_penalty.
    ids = c.completions.create(model="small-gpt2", prompt=[464, 2068, 7586], max_tokens=4, temperature=0,
                               extra_body={"top_k": 5, "repetition_penalty": 1.2})
    assert len(ids.choices[0].text) > 0
    # ignore_eos (vLLM's and llama.cpp's extension): exactly max_tokens; a wrong type is refused.
    r = c.completions.create(model="small-gpt2", prompt="Hello", max_tokens=9, temperature=0,
                             extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 9 and r.choices[0].finish_reason == "length"
    with pytest.raises(openai.BadRequestError, match="ignore_eos"):
        c.completions.create(model="small-gpt2", prompt="Hello", max_tokens=2, extra_body={"ignore_eos": "yes"})
    assert c.models.list().data[0].id == "small-gpt2"


def test_chat_completions_say_there_is_no_chat_template(text_server):
    with pytest.raises(openai.BadRequestError, match="no chat template"):
        client(text_server).chat.completions.create(model="small-gpt2", messages=[{"role": "user", "content": "hi"}])


def test_tokenize_and_detokenize(text_server):
    s, body, _ = text_server.post("/tokenize", {"content": "Hello world"})
    assert s == 200 and body["tokens"] == [15496, 995]
    s, body, _ = text_server.post("/detokenize", {"tokens": [15496, 995]})
    assert s == 200 and body["content"] == "Hello world"


def test_concurrent_clients_each_get_their_solo_greedy_result(tiny_server):
    rng = np.random.default_rng(3)
    prompts = [rng.integers(0, 1000, int(rng.integers(1, 20))).tolist() for _ in range(32)]
    lengths = [int(rng.integers(1, 30)) for _ in range(32)]

    def ask(i):
        s, body, _ = tiny_server.post("/v1/completions", {"prompt": prompts[i], "max_tokens": lengths[i],
                                                          "temperature": 0})
        assert s == 200, body
        return body["choices"][0]["token_ids"]

    solo = [ask(i) for i in range(32)]
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        together = list(pool.map(ask, range(32)))
    assert together == solo


def test_join_waves_keep_every_result_and_starve_no_one(tiny_server):
    # --join-wait-steps (cuda's default 8): requests arriving while every slot decodes wait to
    # join in waves; each still gets its solo greedy tokens, and a lone late one joins after the
    # wait, not when the batch drains.
    waves = ServerProcess("--hf=" + os.path.join(DATA, "gpt2-tiny", "hf"), "--slots=8", "--threads=2",
                          "--join-wait-steps=4")
    try:
        rng = np.random.default_rng(4)
        prompts = [rng.integers(0, 1000, int(rng.integers(1, 20))).tolist() for _ in range(24)]
        lengths = [int(rng.integers(1, 40)) for _ in range(24)]

        def ask(server, i):
            s, body, _ = server.post("/v1/completions", {"prompt": prompts[i], "max_tokens": lengths[i],
                                                         "temperature": 0})
            assert s == 200, body
            return body["choices"][0]["token_ids"]

        solo = [ask(tiny_server, i) for i in range(24)]
        with concurrent.futures.ThreadPoolExecutor(24) as pool:
            assert list(pool.map(lambda i: ask(waves, i), range(24))) == solo
        s, body, _ = waves.post("/v1/completions", {"prompt": [5], "max_tokens": 2, "stream": False,
                                                    "temperature": 0, "n": 1})
        assert s == 200 and len(body["choices"][0]["token_ids"]) == 2
    finally:
        assert waves.stop() == 0
    bad = subprocess.run([cli(), "serve", "--hf=" + os.path.join(DATA, "gpt2-tiny", "hf"), "--join-wait-steps=-1"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "join-wait-steps" in bad.stderr


def test_kserve_v2_with_tritonclient(tiny_server):
    httpclient = pytest.importorskip("tritonclient.http")
    from safetensors.numpy import load_file
    c = httpclient.InferenceServerClient(url=f"127.0.0.1:{tiny_server.port}")
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("hf")
    meta = c.get_model_metadata("hf")
    assert [i["name"] for i in meta["inputs"]] == ["input_ids", "attention_mask"]
    g = load_file(os.path.join(DATA, "gpt2-tiny", "goldens.safetensors"))
    ids, mask, want = g["case0.input_ids"], g["case0.attention_mask"], g["case0.logits"]
    for binary in (True, False):
        inputs = [httpclient.InferInput("input_ids", list(ids.shape), "INT64"),
                  httpclient.InferInput("attention_mask", list(mask.shape), "INT64")]
        inputs[0].set_data_from_numpy(ids.astype(np.int64), binary_data=binary)
        inputs[1].set_data_from_numpy(mask.astype(np.int64), binary_data=binary)
        out = c.infer("hf", inputs, outputs=[httpclient.InferRequestedOutput("logits", binary_data=binary)])
        got = out.as_numpy("logits")
        keep = mask.astype(bool)
        assert np.abs(got - want)[keep].max() <= 1e-4
    with pytest.raises(Exception, match="not served here"):
        c.get_model_metadata("nope")


def test_bad_input_gets_an_error_object_and_the_right_status(tiny_server):
    post = tiny_server.post
    assert post("/v1/completions", None, raw=b"{not json")[0] == 400
    s, body, _ = post("/v1/completions", {"prompt": [1, 2], "max_tokens": "many"})
    assert s == 400 and body["error"]["param"] == "max_tokens"
    s, body, _ = post("/v1/completions", {"prompt": [1, 2], "model": "gpt-4"})
    assert s == 404 and "does not exist" in body["error"]["message"]
    s, body, _ = post("/v1/completions", {"prompt": list(range(60)), "max_tokens": 10})
    assert s == 400 and "60 tokens" in body["error"]["message"] and "64" in body["error"]["message"]
    s, body, _ = post("/v1/completions", {"prompt": [5, 1000]})
    assert s == 400 and "1000" in body["error"]["message"]
    s, body, _ = post("/v1/completions", {"prompt": [1], "n": 1000})
    assert s == 400 and body["error"]["param"] == "n"
    s, body, _ = post("/v1/completions", {"prompt": "text, but no tokenizer"})
    assert s == 400 and "token ids" in body["error"]["message"]
    s, body, _ = post("/v1/completions", {"prompt": [1], "presence_penalty": 1})
    assert s == 400 and "presence_penalty" in body["error"]["message"]
    s, body, _ = post("/v1/completions", {"prompt": [1] * 10}, raw=b'{"prompt": [' + b"1," * (5 << 20) + b"1]}")
    assert s == 413
    assert tiny_server.get("/v2/models/hf/infer")[0] in (404, 405)


def test_kserve_bad_requests_are_refused_with_a_reason(tiny_server):
    infer = "/v2/models/hf/infer"
    ids = {"name": "input_ids", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}
    mask = {"name": "attention_mask", "shape": [1, 2], "datatype": "INT64", "data": [1, 1]}
    s, body, _ = tiny_server.post(infer, {"inputs": [ids, mask]})
    assert s == 200 and body["outputs"][0]["shape"] == [1, 2, 1000]
    s, body, _ = tiny_server.post(infer, {"inputs": [dict(ids, datatype="FP64"), mask]})
    assert s == 400 and "FP64" in body["error"]
    s, body, _ = tiny_server.post(infer, {"inputs": [dict(ids, data=[1, 2, 3]), mask]})
    assert s == 400 and "3 values" in body["error"] and "needs 2" in body["error"]
    s, body, _ = tiny_server.post(infer, {"inputs": [dict(ids, data=[1, 5000]), mask]})
    assert s == 400 and "5000" in body["error"]
    s, body, _ = tiny_server.post(infer, {"inputs": [ids]})
    assert s == 400 and "attention_mask" in body["error"]
    s, body, _ = tiny_server.post(infer, {"inputs": [ids, mask], "outputs": [{"name": "nope"}]})
    assert s == 400 and "'nope' does not exist" in body["error"]
    s, body, _ = tiny_server.post(infer, None, raw=b'{"inputs": [')
    assert s == 400 and "not valid JSON" in body["error"]
    s, body, _ = tiny_server.post("/v2/models/other/infer", {"inputs": [ids, mask]})
    assert s == 404 and "not served here" in body["error"]
    s, body, _ = tiny_server.post(infer, {"inputs": [dict(ids, parameters={"binary_data_size": 16}), mask]},
                                  headers={"Inference-Header-Content-Length": "5000"})
    assert s == 400 and "larger than the body" in body["error"]


def test_api_key_is_required_when_set(tmp_path):
    s = ServerProcess("--hf=" + os.path.join(DATA, "gpt2-tiny", "hf"), "--api-key=sekrit")
    try:
        status, body, _ = s.post("/v1/completions", {"prompt": [1]})
        assert status == 401 and body["error"]["type"] == "authentication_error"
        status, body, _ = s.post("/v1/completions", {"prompt": [1]}, headers={"Authorization": "Bearer wrong"})
        assert status == 401
        status, body, _ = s.post("/v1/completions", {"prompt": [1], "max_tokens": 2},
                                 headers={"Authorization": "Bearer sekrit"})
        assert status == 200
        assert s.get("/health")[0] == 200  # probes need no key
    finally:
        assert s.stop() == 0


def test_full_queue_answers_429_and_deadline_504(text_model):
    s = ServerProcess("--hf=" + text_model, "--slots=1", "--max-queue=1", "--threads=1")
    try:
        body = {"prompt": [464] * 8, "max_tokens": 100, "temperature": 0}
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda _: s.post("/v1/completions", body), range(6)))
        statuses = [r[0] for r in results]
        assert 429 in statuses and 200 in statuses
        assert all(r[2].get("Retry-After") == "1" for r in results if r[0] == 429)
        assert s.metric("gptrt_requests_rejected_total") >= 1
    finally:
        assert s.stop() == 0
    d = ServerProcess("--hf=" + text_model, "--timeout=0.001")
    try:
        status, body, _ = d.post("/v1/completions", {"prompt": [464] * 8, "max_tokens": 100})
        assert status == 504 and "deadline" in body["error"]["message"]
    finally:
        assert d.stop() == 0


def test_cancelled_stream_frees_its_slot(text_server):
    c = client(text_server)
    before = text_server.metric("gptrt_requests_cancelled_total")
    stream = c.completions.create(model="small-gpt2", prompt="Once upon a time", max_tokens=120, stream=True)
    next(iter(stream))
    stream.close()  # the client goes away mid-stream
    for _ in range(100):
        if text_server.metric("gptrt_kv_slots_in_use") == 0 and \
                text_server.metric("gptrt_requests_cancelled_total") > before:
            break
        time.sleep(0.05)
    assert text_server.metric("gptrt_requests_cancelled_total") > before
    assert text_server.metric("gptrt_kv_slots_in_use") == 0


def test_client_gone_before_a_non_streamed_answer_frees_its_slots(text_model):
    s = ServerProcess("--hf=" + text_model, "--slots=8", "--threads=1")
    try:
        body = json.dumps({"prompt": [464] * 8, "max_tokens": 119, "n": 8, "temperature": 0}).encode()
        sock = socket.create_connection(("127.0.0.1", s.port))
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        for _ in range(200):  # until the request runs
            if s.metric("gptrt_kv_slots_in_use") == 8:
                break
            time.sleep(0.005)
        sock.close()  # the client goes away before the answer
        for _ in range(200):
            if s.metric("gptrt_kv_slots_in_use") == 0:
                break
            time.sleep(0.01)
        assert s.metric("gptrt_requests_cancelled_total") == 8
        assert s.metric("gptrt_kv_slots_in_use") == 0
        assert s.metric("gptrt_generation_tokens_total") < 8 * 119  # stopped, not finished
    finally:
        assert s.stop() == 0


def test_sigterm_drains_requests_in_flight(text_model):
    s = ServerProcess("--hf=" + text_model, "--slots=2")
    result = {}

    def long_request():
        result["r"] = s.post("/v1/completions", {"prompt": [464] * 4, "max_tokens": 120, "temperature": 0})

    t = threading.Thread(target=long_request)
    t.start()
    time.sleep(0.2)
    s.proc.send_signal(signal.SIGTERM)
    t.join(60)
    assert s.proc.wait(timeout=60) == 0
    status, body, _ = result["r"]
    assert status == 200 and body["choices"][0]["finish_reason"] == "length"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.port), timeout=1).close()


def test_metrics_are_prometheus_text(tiny_server):
    status, text = tiny_server.get("/metrics")
    assert status == 200
    for name in ("gptrt_requests_running", "gptrt_requests_waiting", "gptrt_kv_slots_in_use",
                 "gptrt_time_to_first_token_seconds_bucket", "gptrt_inter_token_latency_seconds_count",
                 "gptrt_prompt_tokens_total", "gptrt_generation_tokens_total",
                 "gptrt_generation_tokens_per_second", "gptrt_requests_rejected_total",
                 "gptrt_decode_step_seconds_count", "gptrt_prefill_step_seconds_sum",
                 "gptrt_step_sequences_total"):
        assert name in text
    # After a request of 5 new tokens from a 3-token prompt: at least one pass with the prompt and
    # four decode steps more than before, each with at least one sequence.
    def value(body, name):
        return float(next(line.split()[1] for line in body.splitlines() if line.startswith(name + " ")))
    before = {n: value(text, n) for n in ("gptrt_decode_step_seconds_count", "gptrt_prefill_step_seconds_count",
                                          "gptrt_step_sequences_total")}
    s, _, _ = tiny_server.post("/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 5, "temperature": 0})
    assert s == 200
    _, after_text = tiny_server.get("/metrics")
    after = {n: value(after_text, n) for n in before}
    assert after["gptrt_prefill_step_seconds_count"] >= before["gptrt_prefill_step_seconds_count"] + 1
    assert after["gptrt_decode_step_seconds_count"] >= before["gptrt_decode_step_seconds_count"] + 4
    assert after["gptrt_step_sequences_total"] >= before["gptrt_step_sequences_total"] + 5


def test_soak_nothing_lost_or_duplicated_and_memory_flat(tiny_server):
    def rss():
        with open(f"/proc/{tiny_server.proc.pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))

    def ask(i):
        s, body, _ = tiny_server.post("/v1/completions", {"prompt": [i % 1000, (7 * i) % 1000], "max_tokens": 4,
                                                          "temperature": 0})
        return s, body.get("id")

    list(map(ask, range(200)))  # warm
    first = rss()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(ask, range(2000)))
    assert all(s == 200 for s, _ in results)
    assert len({i for _, i in results}) == 2000  # every request answered once
    with open(cli(), "rb") as f:
        binary = f.read()
    sanitized = b"__asan_init" in binary or b"__tsan_init" in binary
    if not sanitized:  # the sanitizers hold freed memory and shadow state (ASan's leak check runs at exit)
        assert rss() - first < 32 * 1024  # kB: flat within 32 MB

"""The gptrt Python package against the CLI (GPTRT_CLI) on the tiny fixture model: the same
engines, the same logits bit for bit, the same generated tokens; its errors; the GIL released
while the engine runs; streaming and the async engine."""
import asyncio
import json
import os
import subprocess
import threading
import time

import numpy as np
import pytest

import gptrt

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
TINY = os.path.join(DATA, "gpt2-tiny", "hf")


def cli():
    path = os.environ.get("GPTRT_CLI")
    if not path:
        pytest.skip("GPTRT_CLI is not set (ctest sets it)")
    return path


@pytest.fixture(scope="module")
def engine():
    return gptrt.build(hf=TINY, backend="cpu")


def inputs(batch=2, seq=7, seed=0, dtype=np.int64):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 1000, (batch, seq)).astype(dtype)
    mask = np.ones((batch, seq), dtype=dtype)
    mask[0, :2] = 0  # left padding in the first row
    return ids, mask


def test_build_save_load_run_equals_the_cli_bit_for_bit(engine, tmp_path):
    path = tmp_path / "tiny.engine"
    engine.save(path)
    loaded = gptrt.load(path)
    assert loaded.backend == "cpu" and loaded.precision == "fp32"
    ids, mask = inputs()
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "mask.npy", mask)
    got = loaded.create_context().run(ids, mask)
    assert got.dtype == np.float32 and got.shape == (2, 7, 1000)
    subprocess.run([cli(), "run", f"--loadEngine={path}",
                    f"--loadInputs=input_ids:{tmp_path / 'ids.npy'},attention_mask:{tmp_path / 'mask.npy'}",
                    f"--exportOutput={tmp_path / 'out'}"], check=True, capture_output=True)
    want = np.load(tmp_path / "out" / "logits.npy")
    assert np.array_equal(got, want)
    # The same through the dict form, and from the engine built in memory.
    assert np.array_equal(engine.create_context().run({"input_ids": ids, "attention_mask": mask})["logits"], want)


def test_int32_and_int64_inputs_give_the_same_logits(engine):
    ctx = engine.create_context()
    a = ctx.run(*inputs(dtype=np.int64))
    b = ctx.run(*inputs(dtype=np.int32))
    assert np.array_equal(a, b)


def test_torch_cpu_tensors_and_lists_are_accepted(engine):
    torch = pytest.importorskip("torch")
    ctx = engine.create_context()
    ids, mask = inputs()
    want = ctx.run(ids, mask)
    assert np.array_equal(ctx.run(torch.from_numpy(ids), torch.from_numpy(mask)), want)
    assert np.array_equal(ctx.run(ids.tolist(), mask.tolist()), want)
    assert np.array_equal(torch.from_dlpack(want).numpy(), want)  # outputs go to torch without a copy


def test_int8_weight_engines_build_run_and_say_so(engine, tmp_path):
    int8 = gptrt.build(hf=TINY, backend="cpu", precision="int8")
    assert int8.precision == "int8" and int8.inspect()["precision"] == "int8"
    int8.save(tmp_path / "int8.engine")
    assert gptrt.load(tmp_path / "int8.engine").precision == "int8"
    ids, mask = inputs()
    got, want = int8.create_context().run(ids, mask), engine.create_context().run(ids, mask)
    assert np.isfinite(got).all() and got.shape == want.shape
    keep = mask.astype(bool)
    assert (got.argmax(-1) == want.argmax(-1))[keep].mean() >= 0.9  # 8-bit weights: close, not equal
    with pytest.raises(gptrt.Error, match="int8"):
        gptrt.build(hf=TINY, backend="cpu", precision="int4")
    # A scale per 16 weights along K as well: closer to the FP32 logits than per channel alone.
    g16 = gptrt.build(hf=TINY, backend="cpu", precision="int8", int8_group=16)
    grouped = g16.create_context().run(ids, mask)
    assert np.abs(grouped - want)[keep].mean() < np.abs(got - want)[keep].mean()
    with pytest.raises(gptrt.Error, match="does not divide K = 64"):
        gptrt.build(hf=TINY, backend="cpu", precision="int8", int8_group=48)


def test_inspect_shows_inputs_and_profiles(engine):
    info = engine.inspect()
    assert [i["name"] for i in info["inputs"]] == ["input_ids", "attention_mask"]
    assert info["backend"] == "cpu" and len(info["profiles"]) == 1
    lo, opt, hi = info["profiles"][0]["input_ids"]
    assert lo == (1, 1) and hi[0] == 64


def test_errors_are_python_exceptions_with_gptrts_messages(engine, tmp_path):
    prof = gptrt.build(hf=TINY, profiles=[{"input_ids": ((1, 1), (1, 8), (2, 8)),
                                           "attention_mask": ((1, 1), (1, 8), (2, 8))}])
    ctx = prof.create_context()
    with pytest.raises(gptrt.ShapeError, match="profile") as e:
        ctx.run(*inputs(batch=1, seq=9))
    assert isinstance(e.value, ValueError)
    with pytest.raises(gptrt.InputError, match="int64, int32"):
        ctx.run(np.zeros((1, 4), np.float64), np.ones((1, 4), np.int64))
    with pytest.raises(gptrt.Error, match="1000"):
        ctx.run(np.full((1, 4), 5000, np.int64), np.ones((1, 4), np.int64))
    with pytest.raises(gptrt.InputError, match="exactly one"):
        gptrt.build()
    with pytest.raises(gptrt.InputError, match="2 inputs"):
        ctx.run(*inputs(batch=1, seq=4), np.ones((1, 4), np.int64))
    with pytest.raises(gptrt.InputError, match=r"\(min, opt, max\)"):
        gptrt.build(hf=TINY, profiles=[{"input_ids": ((1, 1), (1, 8))}])
    with pytest.raises(gptrt.InputError, match="a dict"):
        gptrt.build(hf=TINY, profiles=[((1, 1), (1, 8), (2, 8))])
    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"not an engine at all")
    with pytest.raises(gptrt.Error, match="bad.engine"):
        gptrt.load(bad)
    with pytest.raises(gptrt.Error, match="no-such"):
        gptrt.build(onnx=str(tmp_path / "no-such.onnx"))


def test_the_gil_is_released_while_the_engine_runs():
    ref = gptrt.build(hf=TINY, backend="reference")
    ctx = ref.create_context(threads=1)
    ids = np.random.default_rng(1).integers(0, 1000, (64, 64))
    mask = np.ones_like(ids)
    ticks = []
    running = threading.Event()
    stop = threading.Event()

    def count():
        running.set()
        while not stop.is_set():
            ticks.append(time.perf_counter())

    t = threading.Thread(target=count)
    t.start()
    running.wait()
    start = time.perf_counter()
    ctx.run(ids, mask)
    end = time.perf_counter()
    stop.set()
    t.join()
    during = [x for x in ticks if start < x < end]
    assert end - start > 0.05, "the run was too short to tell"
    # The counting thread ran throughout the call, not only at the interpreter's switch points.
    assert len(during) > 1000


def generate_cli(prompt, n, *extra):
    r = subprocess.run([cli(), "generate", f"--hf={TINY}", "--prompt-ids=" + ",".join(map(str, prompt)),
                        f"--max-new-tokens={n}", "--format=json", *extra], check=True, capture_output=True,
                       text=True)
    return json.loads(r.stdout)["results"][0]["generated_ids"]


def test_generate_stream_and_async_equal_gptrt_generate(engine):
    prompts = [[11, 12, 13], [400, 7, 99, 5, 3], [1]]
    want = [generate_cli(p, 9) for p in prompts]
    assert gptrt.generate(engine, prompts, max_new_tokens=9) == want
    assert list(gptrt.stream(engine, prompts[1], max_new_tokens=9)) == want[1]
    sampled = generate_cli(prompts[0], 9, "--do-sample", "--top-k=20", "--seed=5")
    assert gptrt.generate(engine, [prompts[0]], 9, temperature=1.0, top_k=20, seed=5) == [sampled]

    async def together():
        async with gptrt.AsyncEngine(engine, slots=2) as ae:
            async def one(p):
                return [t async for t in ae.generate(p, max_new_tokens=9)]
            return await asyncio.gather(*(one(p) for p in prompts))

    assert asyncio.run(together()) == want


def test_async_engine_frees_the_slot_of_a_request_left_early(engine):
    async def main():
        async with gptrt.AsyncEngine(engine, slots=1) as ae:
            got = []
            async for t in ae.generate([5, 6], max_new_tokens=50):
                got.append(t)
                if len(got) == 3:
                    break
            # The only slot serves the next request (the first was cancelled, not run to the end).
            nxt = [t async for t in ae.generate([11, 12, 13], max_new_tokens=4)]
            return got, nxt

    got, nxt = asyncio.run(main())
    assert len(got) == 3 and nxt == generate_cli([11, 12, 13], 4)
    with pytest.raises(gptrt.InputError, match="vocabulary"):
        async def bad():
            async with gptrt.AsyncEngine(engine) as ae:
                async for _ in ae.generate([5000]):
                    pass
        asyncio.run(bad())


def test_tokenizer_from_file():
    tok = gptrt.Tokenizer.from_file(os.path.join(DATA, "tokenizer"))
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.decode([15496, 995]) == "Hello world"
    assert tok.vocab_size == 50257 and tok.special_id("<|endoftext|>") == 50256
    with pytest.raises(gptrt.Error, match="no-such"):
        gptrt.Tokenizer.from_file("/no-such/tokenizer.json")


def test_version():
    assert gptrt.__version__ == gptrt.version().split()[0]

"""Tensors in GPU memory through the package (DLPack, no host copy): on a cuda engine, torch
tensors on the GPU in, torch tensors on the GPU out, equal to the host path bit for bit; bad values
and misplaced tensors refused with gptrt's messages. Skipped, saying why, without a GPU or a CUDA
build; the host engine's refusal runs everywhere."""
import os

import numpy as np
import pytest

import gptrt

TINY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "gpt2-tiny", "hf")


class FakeCudaTensor:
    """What a DLPack producer in GPU memory reports, without a GPU."""

    def __dlpack_device__(self):
        return (2, 0)


def test_a_host_engine_refuses_gpu_tensors_by_name():
    ctx = gptrt.build(hf=TINY, backend="cpu").create_context()
    with pytest.raises(gptrt.InputError, match="given to a cpu engine, which runs on the host"):
        ctx.run(FakeCudaTensor(), FakeCudaTensor())


@pytest.fixture(scope="module")
def cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch")
    try:
        engine = gptrt.build(hf=TINY, backend="cuda")
    except gptrt.Error as e:
        pytest.skip(f"no cuda engine here: {e}")
    return torch, engine


def test_gpu_tensors_in_and_out_equal_the_host_path(cuda):
    torch, engine = cuda
    ctx = engine.create_context()
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 1000, (3, 9)).astype(np.int64)
    mask = np.ones((3, 9), dtype=np.int64)
    mask[1, :4] = 0
    want = ctx.run(ids, mask)
    got = ctx.run(torch.from_numpy(ids).cuda(), torch.from_numpy(mask).cuda())
    assert isinstance(got, torch.Tensor) and got.is_cuda and tuple(got.shape) == (3, 9, 1000)
    assert np.array_equal(got.cpu().numpy(), want)
    # int32 ids (converted on the GPU), a strided view (made contiguous), and out= written in place.
    out = torch.full((3, 9, 1000), float("nan"), device="cuda")
    ptr = out.data_ptr()
    wide = torch.from_numpy(np.concatenate([ids, ids], axis=1)).cuda()[:, ::2]
    assert not wide.is_contiguous()
    res = ctx.run(wide.to(torch.int32), torch.from_numpy(mask).cuda(), out=out)
    assert res.data_ptr() == ptr
    assert np.array_equal(out.cpu().numpy(), ctx.run(np.ascontiguousarray(np.concatenate([ids, ids], 1)[:, ::2]), mask))
    # Ordered after torch's current stream: inputs made on a side stream just before the run.
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        late = torch.from_numpy(ids).cuda(non_blocking=True) * 1
        got = ctx.run(late, torch.from_numpy(mask).to("cuda", non_blocking=True))
    assert np.array_equal(got.cpu().numpy(), want)


def test_bad_gpu_inputs_are_refused_with_gptrts_messages(cuda):
    torch, engine = cuda
    ctx = engine.create_context()
    ids = torch.zeros((2, 4), dtype=torch.int64, device="cuda")
    mask = torch.ones((2, 4), dtype=torch.int64, device="cuda")
    ids[1, 2] = 5000
    with pytest.raises(gptrt.Error, match=r"holds 5000 at \[1, 2\], outside the valid range \[0, 1000\)"):
        ctx.run(ids, mask)
    with pytest.raises(gptrt.InputError, match="in host memory while other inputs are on the GPU"):
        ctx.run(torch.zeros((2, 4), dtype=torch.int64, device="cuda"), np.ones((2, 4), dtype=np.int64))
    with pytest.raises(gptrt.ShapeError, match=r"expected float32 \[2, 4, 1000\]"):
        ctx.run(torch.zeros((2, 4), dtype=torch.int64, device="cuda"), mask,
                out=torch.empty((2, 3, 1000), device="cuda"))
    with pytest.raises(gptrt.ShapeError):
        ctx.run(torch.zeros((2, 4000), dtype=torch.int64, device="cuda"),
                torch.ones((2, 4000), dtype=torch.int64, device="cuda"))
    ok = ctx.run(torch.zeros((2, 4), dtype=torch.int64, device="cuda"), mask)  # still runs after them
    assert bool(torch.isfinite(ok).all())

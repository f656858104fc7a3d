"""Shared by the fixture scripts that compare a variant file with ONNX Runtime: the fixed inputs
(2x12 ids, a left-padded second row) and ONNX Runtime CPU's logits, written next to the file as
BASE.ids.npy, BASE.mask.npy and BASE.ort_logits.npy."""
import numpy as np
import onnxruntime as ort


def write_oracle(base):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 1000, (2, 12)).astype(np.int64)
    mask = np.ones((2, 12), np.int64)
    mask[1, :3] = 0  # a left-padded row
    logits = ort.InferenceSession(base + ".onnx", providers=["CPUExecutionProvider"]).run(
        None, {"input_ids": ids, "attention_mask": mask})[0]
    np.save(base + ".ids.npy", ids)
    np.save(base + ".mask.npy", mask)
    np.save(base + ".ort_logits.npy", logits.astype(np.float32))
    return logits

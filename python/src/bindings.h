// The parts of the gptrt._gptrt module, one file each, and what they share: NumPy arrays to and
// from gptrt tensors, and Python callables called from gptrt's threads.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <string>

#include "gptrt/engine.h"
#include "gptrt/tensor.h"

namespace gptrt::python {

namespace nb = nanobind;

void bind_engine(nb::module_& m);
void bind_generate(nb::module_& m);
void bind_tokenizer(nb::module_& m);
void bind_scheduler(nb::module_& m);

/// A gptrt tensor holding a copy of a NumPy array (any C-contiguous or strided array of int32,
/// int64, float32 or float16); throws gptrt::Error naming `what` for other dtypes.
Tensor tensor_from_array(nb::handle array, const std::string& what);
/// A view of a C-contiguous DLPack tensor in GPU 0's memory (torch.Tensor on "cuda:0", CuPy...);
/// throws gptrt::Error naming `what` for host tensors, other dtypes, strides or GPUs.
DeviceTensor device_tensor_from(nb::handle obj, const std::string& what);
/// A NumPy array that owns `t`'s bytes (no copy).
nb::object array_from_tensor(const Tensor& t);
/// str(h) as UTF-8 ("?" if Python cannot make it).
std::string py_str(nb::handle h);

}  // namespace gptrt::python

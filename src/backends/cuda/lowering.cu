// Build time for the CUDA backend: which nodes it runs, and the plan rewritten for the GPU
// (16-bit weight matrices stored [N, K]); which values are kept in 16 bits.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/runner_impl.cuh"
#include "backends/int8_weights.h"
#include "backends/reference/fused_ops.h"
#include "core/half.h"
#include "gptrt/error.h"

namespace gptrt::cuda {

// FP16/BF16 engines keep a value in that type when only linear layers read it (as their input):
// the LayerNorm outputs, the attention outputs and the MLP's inner activations. The residual
// stream, qkv and the logits stay FP32.
std::vector<char> half_values(const ir::Graph& g, Precision precision) {
  std::vector<char> half(g.values.size(), 0);
  if (precision != Precision::kFp16 && precision != Precision::kBf16 &&
      precision != Precision::kInt8)  // (INT8 plans run as FP16: see int8_plan.cpp)
    return half;
  std::vector<int> readers(g.values.size(), 0), linear_readers(g.values.size(), 0);
  for (const ir::Node& n : g.nodes) {
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      if (n.inputs[k] < 0) continue;
      ++readers[static_cast<size_t>(n.inputs[k])];
      if (n.op_type == "Linear" && k == 0) ++linear_readers[static_cast<size_t>(n.inputs[k])];
    }
  }
  for (const ir::Node& n : g.nodes) {
    int id = n.outputs[0];
    half[static_cast<size_t>(id)] =
        readers[static_cast<size_t>(id)] > 0 &&
        readers[static_cast<size_t>(id)] == linear_readers[static_cast<size_t>(id)];
  }
  for (int id : g.outputs) half[static_cast<size_t>(id)] = 0;
  return half;
}

// `t` in the precision's storage type (FP16, BF16, else FP32); a [K, N] weight transposed to
// [N, K] when `transpose`.
Tensor stored(const Tensor& t, Precision precision, bool transpose) {
  std::vector<int64_t> shape = t.shape();
  if (transpose) std::swap(shape[0], shape[1]);
  const bool half = precision == Precision::kFp16 || precision == Precision::kBf16;
  Tensor h(precision == Precision::kFp16   ? DType::kFloat16
           : precision == Precision::kBf16 ? DType::kBFloat16
                                           : DType::kFloat32,
           shape);
  int64_t rows = t.dim(0), cols = t.numel() / std::max<int64_t>(rows, 1);
  for (int64_t i = 0; i < t.numel(); ++i) {
    float x = t.data<float>()[i];
    int64_t at = transpose ? i % cols * rows + i / cols : i;
    if (!half)
      h.data_mut<float>()[at] = x;
    else
      h.data_mut<uint16_t>()[at] =
          precision == Precision::kFp16 ? float_to_half(x) : float_to_bf16(x);
  }
  return h;
}

bool has_kernel(const ir::Node& n) {
  return (n.domain == ir::kFusedDomain &&
          (n.op_type == "Embedding" || n.op_type == "Linear" || n.op_type == "Attention")) ||
         (n.domain.empty() && n.op_type == "LayerNormalization" && n.attr_int("axis", -1) == -1);
}

void lower(ir::Graph& g, Precision engine_precision, int64_t int8_group) {
  std::vector<char> half = half_values(g, engine_precision);
  // INT8 engines: weight matrices INT8 [N, K] with their scales at input 4; everything else as
  // FP16 engines have it.
  const bool int8 = engine_precision == Precision::kInt8;
  const Precision precision = int8 ? Precision::kFp16 : engine_precision;
  for (const ir::Node& n : g.nodes)
    if (n.domain == ir::kFusedDomain &&
        ((n.op_type == "Attention" && n.inputs.size() > 2) || n.op_type == "CacheGate"))
      throw Error(ErrorCode::kUnsupported,
                  n.describe() +
                      " takes past keys and values (a with-past or merged export), which the cuda "
                      "backend does not run as graph inputs; build with --noPast for the plain "
                      "decoder (generation keeps its KV cache on the GPU), or with --backend=cpu "
                      "to run the past inputs and presents");
  for (ir::Node& n : g.nodes) {
    if (!has_kernel(n)) throw Error(ErrorCode::kUnsupported, n.describe() + " has no CUDA kernel");
    if (n.op_type == "Attention") {
      int64_t e = g.values[static_cast<size_t>(n.outputs[0])].shape.dims.back().value;
      int64_t d = e / n.attr_int("num_heads", 1);
      if (d > 256)
        throw Error(ErrorCode::kUnsupported, n.describe() + ": head size " + std::to_string(d) +
                                                 " is over 256, the CUDA attention kernel's limit");
    }
    if (n.op_type != "Linear") continue;
    // Every linear weight stored [N, K] (transB = 1: what the skinny kernels read; cuBLASLt reads
    // either), in FP16/BF16 for those precisions, as a new value so that a tied embedding keeps
    // its FP32 table; for FP16/BF16 also the bias when the output is kept in that type (cuBLASLt
    // adds it in the output type).
    const bool half_weights = precision == Precision::kFp16 || precision == Precision::kBf16;
    auto convert = [&](size_t input, bool transpose) {
      const ir::Value& v = g.values[static_cast<size_t>(n.inputs[input])];
      std::string name = v.name +
                         (!half_weights                   ? ""
                          : precision == Precision::kFp16 ? ".fp16"
                                                          : ".bf16") +
                         (transpose ? ".T" : "");
      int id = g.find(name);
      if (id < 0) id = g.add_constant(name, stored(v.constant, precision, transpose));
      n.inputs[input] = id;
    };
    const bool transpose = n.attr_int("transB", 0) == 0;
    if (int8) {
      const ir::Value& v = g.values[static_cast<size_t>(n.inputs[1])];
      std::string name = v.name + ".int8";
      int id = g.find(name);
      if (id < 0) {
        const int64_t k = transpose ? v.constant.dim(0) : v.constant.dim(1);
        backends::check_int8_group(k, int8_group, n.describe() + " (weights '" + v.name + "')");
        backends::Int8Weights q = backends::quantize_int8(v.constant, !transpose, int8_group);
        id = g.add_constant(name, q.q);
        g.add_constant(name + ".scales", q.scales);
      }
      n.inputs[1] = id;
      n.inputs.resize(5, -1);
      n.inputs[4] = g.find(name + ".scales");
    } else if (half_weights || transpose) {
      convert(1, transpose);
    }
    n.attrs["transB"] = ir::int_attr(1);
    if (!half_weights) continue;
    bool erf = n.attr_string("activation", "") == "gelu_erf";  // bias added in FP32 scratch
    if (n.inputs.size() > 2 && n.inputs[2] >= 0 && half[static_cast<size_t>(n.outputs[0])] && !erf)
      convert(2, false);
  }
}

}  // namespace gptrt::cuda

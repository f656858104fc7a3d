// A float16/bfloat16 graph (an FP16 export) as the same graph in float32: every 16-bit float
// constant widened (exactly), every cast to a 16-bit float made a cast to float32. The fused
// decoder is then recognised as in an FP32 export; backends keep the weights at the precision
// the engine is built for (FP16 on cuda --fp16 gives the file's weights back bit for bit).
#include <algorithm>

#include "core/half.h"
#include "ir/shape_inference.h"
#include "passes/passes.h"

namespace gptrt::passes {
namespace {

bool is_16bit(DType d) {
  return d == DType::kFloat16 || d == DType::kBFloat16;
}

}  // namespace

int widen_16bit_floats(ir::Graph& g) {
  for (int id : g.inputs)
    if (is_16bit(g.values[static_cast<size_t>(id)].dtype)) return 0;  // the inputs are the contract
  int changed = 0;
  for (ir::Value& v : g.values) {
    if (!v.is_constant() || !is_16bit(v.constant.dtype())) continue;
    v.constant = widen_to_float32(v.constant);
    v.dtype = DType::kFloat32;
    ++changed;
  }
  for (ir::Node& n : g.nodes) {
    if (!n.domain.empty()) continue;
    if (n.op_type == "Cast") {
      auto it = n.attrs.find("to");
      if (it != n.attrs.end() && (it->second.i == static_cast<int64_t>(DType::kFloat16) ||
                                  it->second.i == static_cast<int64_t>(DType::kBFloat16))) {
        it->second.i = static_cast<int64_t>(DType::kFloat32);
        ++changed;
      }
    }
    for (const char* attr : {"value"}) {  // Constant, ConstantOfShape
      auto it = n.attrs.find(attr);
      if (it != n.attrs.end() && it->second.kind == ir::Attribute::Kind::kTensor &&
          !it->second.t.empty() && is_16bit(it->second.t.dtype())) {
        it->second.t = widen_to_float32(it->second.t);
        ++changed;
      }
    }
  }
  if (changed) ir::infer_shapes(g);
  return changed;
}

}  // namespace gptrt::passes

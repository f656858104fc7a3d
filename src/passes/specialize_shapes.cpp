#include "gptrt/error.h"
#include "ir/shape_inference.h"
#include "passes/passes.h"

namespace gptrt::passes {

int specialize_shapes(ir::Graph& g, const std::map<std::string, Shape>& input_shapes) {
  int fixed = 0;
  for (int id : g.inputs) {
    ir::Value& v = g.values[static_cast<size_t>(id)];
    auto it = input_shapes.find(v.name);
    if (it == input_shapes.end() || !v.shape.rank_known || v.shape.dims.size() != it->second.size())
      continue;
    for (size_t d = 0; d < v.shape.dims.size(); ++d) {
      if (!v.shape.dims[d].is_known()) {
        v.shape.dims[d] = ir::Dim::known(it->second[d]);
        ++fixed;
      }
    }
  }
  if (fixed) ir::infer_shapes(g);
  return fixed;
}

}  // namespace gptrt::passes

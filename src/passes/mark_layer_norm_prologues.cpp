#include <algorithm>

#include "passes/passes.h"
#include "passes/pattern.h"

namespace gptrt::passes {

int mark_layer_norm_prologues(ir::Graph& g) {
  Uses uses(g);
  int marked = 0;
  for (const ir::Node& ln : g.nodes) {
    if (ln.op_type != "LayerNormalization" || ln.outputs.empty() || ln.outputs[0] < 0 ||
        ln.inputs.size() < 3 || ln.inputs[2] < 0)
      continue;
    const int y = ln.outputs[0];
    const std::vector<int>& readers = uses.consumers[static_cast<size_t>(y)];
    bool only_linear = !readers.empty() && !uses.is_output[static_cast<size_t>(y)];
    for (int r : readers) {
      const ir::Node& n = g.nodes[static_cast<size_t>(r)];
      only_linear = only_linear && n.domain == kFusedDomain && n.op_type == "Linear" &&
                    n.inputs[0] == y && std::count(n.inputs.begin(), n.inputs.end(), y) == 1;
    }
    if (!only_linear) continue;
    for (int r : readers) {
      g.nodes[static_cast<size_t>(r)].attrs["layer_norm_prologue"] = int_attr(1);
      ++marked;
    }
  }
  return marked;
}

}  // namespace gptrt::passes

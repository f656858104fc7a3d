#include "passes/passes.h"
#include "passes/pattern.h"

namespace gptrt::passes {

int mark_attention_projections(ir::Graph& g) {
  Uses uses(g);
  int marked = 0;
  for (size_t i = 0; i + 1 < g.nodes.size(); ++i) {
    ir::Node& n = g.nodes[i];
    const ir::Node& next = g.nodes[i + 1];
    if (n.domain != kFusedDomain || n.op_type != "Linear" || n.outputs.empty() ||
        n.outputs[0] < 0 || next.domain != kFusedDomain || next.op_type != "Attention" ||
        next.inputs.empty() || next.inputs[0] != n.outputs[0] || !uses.single_use(n.outputs[0]))
      continue;
    n.attrs["attention_follows"] = int_attr(1);
    ++marked;
  }
  return marked;
}

}  // namespace gptrt::passes

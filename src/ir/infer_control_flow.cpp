// Shape inference of control flow: If runs one of two closed subgraphs (ir::Attribute::graph)
// on the outer values its node passes after the condition.
#include <string>
#include <vector>

#include "ir/infer_common.h"
#include "ir/shape_inference.h"

namespace gptrt::ir::infer {
namespace {

// A copy of branch `attr` with its inputs typed as the node's and every node inferred.
Graph inferred_branch(const Graph& g, const Node& n, const std::string& attr) {
  const Graph* b = n.attr_graph(attr);
  if (!b) fail(n, "has no graph attribute '" + attr + "'");
  if (b->inputs.size() + 1 != n.inputs.size())
    fail(n, "its " + attr + " reads " + std::to_string(b->inputs.size()) +
                " outer values, the node passes " + std::to_string(n.inputs.size() - 1));
  Graph copy = *b;
  std::vector<char> defined(copy.values.size(), 0);
  for (size_t i = 0; i < copy.inputs.size(); ++i) {
    int id = copy.inputs[i];
    if (id < 0 || static_cast<size_t>(id) >= copy.values.size())
      fail(n, "its " + attr + " has an input id out of range");
    const Value& v = in(g, n, i + 1);
    Value& c = copy.values[static_cast<size_t>(id)];
    c.dtype = v.dtype;
    c.shape = v.shape;
    c.sym_value = v.sym_value;
    defined[static_cast<size_t>(id)] = 1;
  }
  for (size_t i = 0; i < copy.values.size(); ++i)
    if (copy.values[i].is_constant()) defined[i] = 1;
  for (const Node& inner : copy.nodes) {
    for (int id : inner.inputs)
      if (id >= 0 &&
          (static_cast<size_t>(id) >= copy.values.size() || !defined[static_cast<size_t>(id)]))
        fail(n, "in its " + attr + ", " + inner.describe() + " reads a value before it is defined");
    for (int id : inner.outputs) {
      if (id < 0) continue;
      if (static_cast<size_t>(id) >= copy.values.size() || defined[static_cast<size_t>(id)])
        fail(n, "in its " + attr + ", " + inner.describe() + " writes a value id twice");
      defined[static_cast<size_t>(id)] = 1;
    }
  }
  for (int id : copy.outputs)
    if (id < 0 || static_cast<size_t>(id) >= copy.values.size() ||
        !defined[static_cast<size_t>(id)])
      fail(n, "its " + attr + " has an output that is never defined");
  infer_shapes(copy);
  return copy;
}

}  // namespace

void infer_if(Graph& g, const Node& n) {
  const Value& cond = in(g, n, 0);
  if (cond.dtype != DType::kBool)
    fail(n, std::string("its condition is ") + dtype_name(cond.dtype) + ", If needs bool");
  Graph t = inferred_branch(g, n, "then_branch");
  Graph e = inferred_branch(g, n, "else_branch");
  if (t.outputs.size() != n.outputs.size() || e.outputs.size() != n.outputs.size())
    fail(n, "its branches give " + std::to_string(t.outputs.size()) + " and " +
                std::to_string(e.outputs.size()) + " outputs, the node has " +
                std::to_string(n.outputs.size()));
  for (size_t i = 0; i < n.outputs.size(); ++i) {
    const Value& a = t.values[static_cast<size_t>(t.outputs[i])];
    const Value& b = e.values[static_cast<size_t>(e.outputs[i])];
    if (a.dtype != b.dtype)
      fail(n, "its branches give output " + std::to_string(i) + " as " + dtype_name(a.dtype) +
                  " and " + dtype_name(b.dtype));
    SymShape s;
    if (a.shape.rank_known && b.shape.rank_known && a.shape.dims.size() == b.shape.dims.size()) {
      s = a.shape;
      for (size_t d = 0; d < s.dims.size(); ++d)
        if (!(a.shape.dims[d] == b.shape.dims[d])) s.dims[d] = Dim::unknown();
    }
    if (has_output(n, i)) set(g, n, i, a.dtype, s);
  }
}

}  // namespace gptrt::ir::infer

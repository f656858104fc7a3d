// Control flow: If runs the branch its condition picks, node by node on the reference kernels,
// with the outer values its node passes after the condition as the branch's inputs.
#include <string>
#include <vector>

#include "backends/reference/fused_ops.h"
#include "backends/reference/kernels.h"

namespace gptrt::reference {
namespace {

std::vector<Tensor> run_if(const KernelCall& c) {
  const Tensor& cond = c.in(0);
  if (cond.numel() != 1)
    c.fail("the condition has " + std::to_string(cond.numel()) + " elements; If needs exactly one");
  const bool take = nonzero(cond, 0);
  const char* attr = take ? "then_branch" : "else_branch";
  const ir::Graph* b = c.node.attr_graph(attr);
  if (!b) c.fail(std::string("has no graph attribute '") + attr + "'");
  if (b->inputs.size() + 1 != c.inputs.size())
    c.fail(std::string("its ") + attr + " reads " + std::to_string(b->inputs.size()) +
           " outer values, the node passes " + std::to_string(c.inputs.size() - 1));
  std::vector<Tensor> values(b->values.size());
  for (size_t i = 0; i < b->inputs.size(); ++i)
    values[static_cast<size_t>(b->inputs[i])] = c.in(i + 1);
  auto value = [&](int id) -> const Tensor* {
    if (id < 0) return nullptr;
    const ir::Value& v = b->values[static_cast<size_t>(id)];
    const Tensor* t = v.is_constant() ? &v.constant : &values[static_cast<size_t>(id)];
    if (t->dtype() == DType::kUndefined)
      c.fail(std::string("its ") + attr + " reads '" + v.name + "' before it is defined");
    return t;
  };
  std::vector<const Tensor*> args;
  for (const ir::Node& n : b->nodes) {
    args.clear();
    for (int id : n.inputs) args.push_back(value(id));
    std::vector<Tensor> outs = run_node(n, args, c.opset);
    for (size_t k = 0; k < n.outputs.size() && k < outs.size(); ++k)
      if (n.outputs[k] >= 0) values[static_cast<size_t>(n.outputs[k])] = std::move(outs[k]);
  }
  std::vector<Tensor> outs;
  for (int id : b->outputs) outs.push_back(*value(id));
  return outs;
}

}  // namespace

void register_control_flow(void (*add)(const char*, KernelFn)) {
  add("If", run_if);
}

}  // namespace gptrt::reference

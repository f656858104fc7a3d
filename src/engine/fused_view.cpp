// Network::fused(): the graph after folding and the fusion passes, one line per node.
#include <sstream>

#include "builder/builder.h"
#include "engine/engine_impl.h"
#include "passes/passes.h"

namespace gptrt {
namespace {

std::string value_text(const ir::Value& v) {
  std::string s = v.name;
  if (v.is_constant()) {
    s += "<";
    for (size_t i = 0; i < v.constant.shape().size(); ++i)
      s += (i ? "x" : "") + std::to_string(v.constant.shape()[i]);
    return s + ">";
  }
  return s;
}

std::string attr_text(const ir::Attribute& a) {
  std::ostringstream os;
  switch (a.kind) {
    case ir::Attribute::Kind::kFloat:
      os << a.f;
      break;
    case ir::Attribute::Kind::kInt:
      os << a.i;
      break;
    case ir::Attribute::Kind::kString:
      os << a.s;
      break;
    case ir::Attribute::Kind::kInts:
      for (size_t i = 0; i < a.ints.size(); ++i) os << (i ? "," : "") << a.ints[i];
      break;
    default:
      os << "...";
  }
  return os.str();
}

}  // namespace

std::string describe_node(const ir::Graph& g, const ir::Node& n) {
  std::string s;
  for (size_t i = 0; i < n.outputs.size(); ++i) {
    if (n.outputs[i] < 0) continue;
    const ir::Value& v = g.values[static_cast<size_t>(n.outputs[i])];
    s += (s.empty() ? "" : ", ") + v.name + " " + v.shape.str();
  }
  s += " = " + (n.domain.empty() ? "" : n.domain + ".") + n.op_type + "(";
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    s += i ? ", " : "";
    s += n.inputs[i] < 0 ? "-" : value_text(g.values[static_cast<size_t>(n.inputs[i])]);
  }
  s += ")";
  for (const auto& [name, a] : n.attrs) s += " " + name + "=" + attr_text(a);
  return s;
}

FusedGraph Network::fused() const {
  ir::Graph g = impl->graph;
  passes::fold_constants(g);
  passes::eliminate_dead_code(g);
  passes::DecoderInfo d = builder::fuse(g, nullptr);
  FusedGraph f;
  f.decoder_recognised = d.recognised;
  f.decoder = d.recognised ? d.summary()
                           : d.summary() +
                                 "; the graph runs op by op on the generic plan "
                                 "(correct, slower)";
  for (const ir::Node& n : g.nodes) {
    f.nodes.push_back(describe_node(g, n));
    ++f.op_counts[(n.domain.empty() ? "" : n.domain + ".") + n.op_type];
  }
  return f;
}

}  // namespace gptrt

#include "ir/describe.h"

#include <sstream>

namespace gptrt::ir {
namespace {

std::string value_text(const Value& v) {
  std::string s = v.name;
  if (v.is_constant()) {
    s += "<";
    for (size_t i = 0; i < v.constant.shape().size(); ++i)
      s += (i ? "x" : "") + std::to_string(v.constant.shape()[i]);
    return s + ">";
  }
  return s;
}

std::string attr_text(const Attribute& a) {
  std::ostringstream os;
  switch (a.kind) {
    case Attribute::Kind::kFloat:
      os << a.f;
      break;
    case Attribute::Kind::kInt:
      os << a.i;
      break;
    case Attribute::Kind::kString:
      os << a.s;
      break;
    case Attribute::Kind::kInts:
      for (size_t i = 0; i < a.ints.size(); ++i) os << (i ? "," : "") << a.ints[i];
      break;
    default:
      os << "...";
  }
  return os.str();
}

TensorDesc describe_value(const Value& v) {
  TensorDesc d;
  d.name = v.name;
  d.dtype = v.dtype;
  for (const Dim& dim : v.shape.dims) {
    d.dims.push_back(dim.is_known() ? dim.value : -1);
    d.dim_names.push_back(dim.is_known() ? "" : dim.symbol);
  }
  return d;
}

bool is_float(DType d) {
  return d == DType::kFloat32 || d == DType::kFloat16 || d == DType::kBFloat16 ||
         d == DType::kFloat64;
}

}  // namespace

ModelInfo describe_graph(const Graph& g) {
  ModelInfo info;
  info.source = g.source;
  info.producer = g.producer;
  info.producer_version = g.producer_version;
  info.ir_version = g.ir_version;
  info.opset = g.opset;
  for (int id : g.inputs) info.inputs.push_back(describe_value(g.values[static_cast<size_t>(id)]));
  for (int id : g.outputs)
    info.outputs.push_back(describe_value(g.values[static_cast<size_t>(id)]));
  for (const Node& n : g.nodes) ++info.op_counts[n.op_type];
  info.node_count = static_cast<int64_t>(g.nodes.size());
  for (const Value& v : g.values) {
    if (!v.is_constant()) continue;
    info.parameter_bytes += static_cast<int64_t>(v.constant.nbytes());
    if (v.is_weight && is_float(v.dtype)) info.parameter_count += v.constant.numel();
  }
  for (const TensorDesc& o : info.outputs) {
    if (o.name == "last_hidden_state") {
      info.notices.push_back(
          "output 'last_hidden_state' is the base model's hidden states, not logits: this export "
          "came from "
          "GPT2Model (the default of `transformers.onnx --model=distilgpt2`); for next-token "
          "logits export "
          "GPT2LMHeadModel (transformers.onnx --feature=causal-lm, or scripts/export_onnx.py)");
    }
  }
  return info;
}

std::string describe_node(const Graph& g, const Node& n) {
  std::string s;
  for (size_t i = 0; i < n.outputs.size(); ++i) {
    if (n.outputs[i] < 0) continue;
    const Value& v = g.values[static_cast<size_t>(n.outputs[i])];
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

}  // namespace gptrt::ir

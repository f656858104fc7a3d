#include "engine/engine_impl.h"

namespace gptrt {
namespace {

TensorDesc describe_value(const ir::Value& v) {
  TensorDesc d;
  d.name = v.name;
  d.dtype = v.dtype;
  for (const ir::Dim& dim : v.shape.dims) {
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

ModelInfo describe_graph(const ir::Graph& g) {
  ModelInfo info;
  info.source = g.source;
  info.producer = g.producer;
  info.producer_version = g.producer_version;
  info.ir_version = g.ir_version;
  info.opset = g.opset;
  for (int id : g.inputs) info.inputs.push_back(describe_value(g.values[static_cast<size_t>(id)]));
  for (int id : g.outputs)
    info.outputs.push_back(describe_value(g.values[static_cast<size_t>(id)]));
  for (const ir::Node& n : g.nodes) ++info.op_counts[n.op_type];
  info.node_count = static_cast<int64_t>(g.nodes.size());
  for (const ir::Value& v : g.values) {
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

}  // namespace gptrt

#include "hf/importer.h"

#include <cmath>
#include <cstring>

#include "core/half.h"
#include "core/safetensors.h"
#include "gptrt/engine.h"
#include "gptrt/error.h"
#include "hf/gpt2_config.h"
#include "ir/shape_inference.h"
#include "ir/verifier.h"

namespace gptrt::hf {
namespace {

// Appends nodes and values to a graph with generated names.
class GraphBuilder {
 public:
  explicit GraphBuilder(ir::Graph& g) : g_(g) {}

  int input(const std::string& name, DType dt, std::vector<ir::Dim> dims) {
    ir::Value v;
    v.name = name;
    v.dtype = dt;
    v.shape = ir::SymShape::of(std::move(dims));
    int id = g_.add_value(std::move(v));
    g_.inputs.push_back(id);
    return id;
  }
  int constant(const std::string& name, Tensor t, bool weight) {
    return g_.add_constant(name, std::move(t), weight);
  }
  int ints(const std::vector<int64_t>& values, bool scalar = false) {
    Tensor t(DType::kInt64, scalar ? Shape{} : Shape{static_cast<int64_t>(values.size())});
    std::memcpy(t.raw_mut(), values.data(), values.size() * 8);
    return constant("const_" + std::to_string(counter_++), t, false);
  }
  int scalar(float v) {
    Tensor t(DType::kFloat32, {});
    t.data_mut<float>()[0] = v;
    return constant("const_" + std::to_string(counter_++), t, false);
  }
  // One node with one output; returns the output's id.
  int op(const std::string& type, std::vector<int> inputs,
         std::map<std::string, ir::Attribute> attrs = {}, const std::string& out_name = "") {
    ir::Node n;
    n.name = "/" + type + "_" + std::to_string(counter_);
    n.op_type = type;
    n.inputs = std::move(inputs);
    n.attrs = std::move(attrs);
    ir::Value v;
    v.name = out_name.empty() ? n.name + "_output" : out_name;
    ++counter_;
    n.outputs = {g_.add_value(std::move(v))};
    g_.nodes.push_back(n);
    ir::infer_node(g_, g_.nodes.back());
    return n.outputs[0];
  }
  std::vector<int> split(int x, int64_t axis, const std::vector<int64_t>& sizes) {
    ir::Node n;
    n.name = "/Split_" + std::to_string(counter_++);
    n.op_type = "Split";
    n.inputs = {x, ints(sizes)};
    n.attrs["axis"] = ir::int_attr(axis);
    for (size_t i = 0; i < sizes.size(); ++i) {
      ir::Value v;
      v.name = n.name + "_output_" + std::to_string(i);
      n.outputs.push_back(g_.add_value(std::move(v)));
    }
    g_.nodes.push_back(n);
    ir::infer_node(g_, g_.nodes.back());
    return n.outputs;
  }

 private:
  ir::Graph& g_;
  int counter_ = 0;
};

// A float32 tensor from safetensors (converting float16/bfloat16), checked against `shape`.
Tensor weight(const std::map<std::string, Tensor>& st, const std::string& name, const Shape& shape,
              const std::string& path) {
  auto it = st.find(name);
  if (it == st.end()) {
    throw Error(ErrorCode::kParseError, "'" + path + "' has no tensor '" + name +
                                            "'; the folder is not a complete GPT-2 checkpoint "
                                            "(expected transformers' GPT2LMHeadModel names)");
  }
  const Tensor& t = it->second;
  if (t.shape() != shape) {
    throw Error(ErrorCode::kShapeError, "'" + path + "': tensor '" + name + "' has shape " +
                                            shape_str(t.shape()) + ", config.json implies " +
                                            shape_str(shape));
  }
  if (t.dtype() == DType::kFloat32) return t;
  if (t.dtype() != DType::kFloat16 && t.dtype() != DType::kBFloat16) {
    throw Error(ErrorCode::kUnsupported, "'" + path + "': tensor '" + name + "' is " +
                                             dtype_name(t.dtype()) +
                                             "; expected float32, float16 or bfloat16");
  }
  Tensor f(DType::kFloat32, t.shape());
  const auto* src = t.data<uint16_t>();
  for (int64_t i = 0; i < t.numel(); ++i)
    f.data_mut<float>()[i] =
        t.dtype() == DType::kFloat16 ? half_to_float(src[i]) : bf16_to_float(src[i]);
  return f;
}

// The MLP's activation as ONNX ops (transformers' ACT2FN semantics). The tanh GELUs (gelu_new,
// gelu_pytorch_tanh, gelu_fast, gelu_accurate: one formula) and the exact one are Gelu ops,
// which the decoder pass fuses; the rest are their defining expressions.
int activation(GraphBuilder& b, int x, const std::string& name) {
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast" ||
      name == "gelu_accurate")
    return b.op("Gelu", {x}, {{"approximate", ir::string_attr("tanh")}});
  if (name == "gelu" || name == "gelu_python")
    return b.op("Gelu", {x}, {{"approximate", ir::string_attr("none")}});
  if (name == "quick_gelu")
    return b.op("Mul", {x, b.op("Sigmoid", {b.op("Mul", {x, b.scalar(1.702f)})})});
  if (name == "relu") return b.op("Relu", {x});
  if (name == "relu6") return b.op("Clip", {x, b.scalar(0.f), b.scalar(6.f)});
  if (name == "silu" || name == "swish") return b.op("Mul", {x, b.op("Sigmoid", {x})});
  if (name == "sigmoid") return b.op("Sigmoid", {x});
  if (name == "tanh") return b.op("Tanh", {x});
  if (name == "linear") return x;
  throw Error(ErrorCode::kInternal, "activation '" + name + "' passed the config check");
}

}  // namespace

onnx::ImportedModel import_folder(const std::string& dir) {
  Gpt2Config c = read_config(dir);
  std::string path = dir + "/model.safetensors";
  std::map<std::string, Tensor> st = safetensors::read(path);
  // Some checkpoints (DistilGPT2 on the Hub) store names without the "transformer." prefix.
  std::map<std::string, Tensor> named;
  for (const auto& [k, v] : st)
    named[k.rfind("transformer.", 0) == 0 || k.rfind("lm_head.", 0) == 0 ? k : "transformer." + k] =
        v;

  onnx::ImportedModel out;
  ir::Graph& g = out.graph;  // float32 weights are views into the mapping, which they keep alive
  g.source = dir;
  g.producer = "gptrt hf import";
  g.producer_version = version();
  g.ir_version = 9;
  g.opset = 20;  // for the Gelu op
  GraphBuilder b(g);
  int64_t C = c.n_embd, H = c.n_head, D = C / H, F = c.inner(), V = c.vocab_size;
  int ids =
      b.input("input_ids", DType::kInt64, {ir::Dim::sym("batch_size"), ir::Dim::sym("seq_len")});
  int mask = b.input("attention_mask", DType::kInt64,
                     {ir::Dim::sym("batch_size"), ir::Dim::sym("seq_len")});

  int wte = b.constant("transformer.wte.weight",
                       weight(named, "transformer.wte.weight", {V, C}, path), true);
  int wpe = b.constant("transformer.wpe.weight",
                       weight(named, "transformer.wpe.weight", {c.n_positions, C}, path), true);
  // Embeddings: token rows plus position rows 0..seq-1.
  int seq = b.op("Gather", {b.op("Shape", {ids}), b.ints({1}, true)});
  int positions = b.op("Range", {b.ints({0}, true), seq, b.ints({1}, true)});
  int h = b.op("Add", {b.op("Gather", {wte, ids}), b.op("Gather", {wpe, positions})});

  // Attention bias [B, 1, T, T]: 0 where key <= query and the key is not padding, else float min.
  int col = b.op("Unsqueeze", {positions, b.ints({0})});
  int row = b.op("Unsqueeze", {positions, b.ints({1})});
  int causal = b.op("LessOrEqual", {col, row});
  int keep = b.op("Unsqueeze",
                  {b.op("Cast", {mask}, {{"to", ir::int_attr(static_cast<int64_t>(DType::kBool))}}),
                   b.ints({1, 2})});
  int allowed = b.op("And", {causal, keep});
  int bias = b.op("Where", {allowed, b.scalar(0.f), b.scalar(-3.4028234663852886e38f)});

  auto layer_norm = [&](int x, const std::string& prefix) {
    int w = b.constant(prefix + ".weight", weight(named, prefix + ".weight", {C}, path), true);
    int bb = b.constant(prefix + ".bias", weight(named, prefix + ".bias", {C}, path), true);
    return b.op("LayerNormalization", {x, w, bb},
                {{"axis", ir::int_attr(-1)},
                 {"epsilon", ir::float_attr(static_cast<float>(c.layer_norm_epsilon))}});
  };
  auto linear = [&](int x, const std::string& prefix, int64_t in,
                    int64_t out_features) {  // Conv1D: w [in, out]
    int w = b.constant(prefix + ".weight",
                       weight(named, prefix + ".weight", {in, out_features}, path), true);
    int bb =
        b.constant(prefix + ".bias", weight(named, prefix + ".bias", {out_features}, path), true);
    return b.op("Add", {b.op("MatMul", {x, w}), bb});
  };
  int heads_shape = b.ints({0, 0, H, D});
  int merged_shape = b.ints({0, 0, C});
  float scale = c.scale_attn_weights ? 1.f / std::sqrt(static_cast<float>(D)) : 1.f;
  for (int64_t l = 0; l < c.n_layer; ++l) {
    std::string p = "transformer.h." + std::to_string(l);
    int x = layer_norm(h, p + ".ln_1");
    std::vector<int> qkv = b.split(linear(x, p + ".attn.c_attn", C, 3 * C), -1, {C, C, C});
    int q = b.op("Transpose", {b.op("Reshape", {qkv[0], heads_shape})},
                 {{"perm", ir::ints_attr({0, 2, 1, 3})}});
    int k = b.op("Transpose", {b.op("Reshape", {qkv[1], heads_shape})},
                 {{"perm", ir::ints_attr({0, 2, 3, 1})}});
    int v = b.op("Transpose", {b.op("Reshape", {qkv[2], heads_shape})},
                 {{"perm", ir::ints_attr({0, 2, 1, 3})}});
    // scale_attn_by_inverse_layer_idx: layer l's scores are also divided by l + 1.
    float layer_scale =
        c.scale_attn_by_inverse_layer_idx ? scale / static_cast<float>(l + 1) : scale;
    int scores = b.op("Add", {b.op("Mul", {b.op("MatMul", {q, k}), b.scalar(layer_scale)}), bias});
    int probs = b.op("Softmax", {scores}, {{"axis", ir::int_attr(-1)}});
    int ctx = b.op("Reshape", {b.op("Transpose", {b.op("MatMul", {probs, v})},
                                    {{"perm", ir::ints_attr({0, 2, 1, 3})}}),
                               merged_shape});
    h = b.op("Add", {h, linear(ctx, p + ".attn.c_proj", C, C)});
    x = layer_norm(h, p + ".ln_2");
    int f = linear(x, p + ".mlp.c_fc", C, F);
    f = activation(b, f, c.activation_function);
    h = b.op("Add", {h, linear(f, p + ".mlp.c_proj", F, C)});
  }
  h = layer_norm(h, "transformer.ln_f");
  // LM head: logits = h @ W^T with W the (tied) embedding, as a Gemm over [B*T, C].
  int head =
      c.tie_word_embeddings
          ? wte
          : b.constant("lm_head.weight", weight(named, "lm_head.weight", {V, C}, path), true);
  int flat = b.op("Reshape", {h, b.ints({-1, C})});
  int logits2d = b.op("Gemm", {flat, head}, {{"transB", ir::int_attr(1)}});
  int out_shape = b.op("Concat", {b.op("Shape", {ids}), b.ints({V})}, {{"axis", ir::int_attr(0)}});
  int logits = b.op("Reshape", {logits2d, out_shape}, {}, "logits");
  g.outputs.push_back(logits);
  g.values[static_cast<size_t>(logits)].shape =
      ir::SymShape::of({ir::Dim::sym("batch_size"), ir::Dim::sym("seq_len"), ir::Dim::known(V)});
  ir::verify(g);
  return out;
}

}  // namespace gptrt::hf

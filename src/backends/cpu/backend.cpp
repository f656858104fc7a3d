#include "backends/cpu/backend.h"

#include <cmath>
#include <map>

#include "backends/cpu/fused_kernels.h"
#include "backends/int8_weights.h"
#include "backends/reference/fused_ops.h"
#include "backends/reference/kernels.h"
#include "gptrt/error.h"

namespace gptrt::cpu {
namespace {

using ir::int_attr;

bool is_matrix(const ir::Value* v) {
  return v && v->is_constant() && v->dtype == DType::kFloat32 && v->constant.rank() == 2;
}

bool is_vector(const ir::Value* v, int64_t n) {
  return v && v->is_constant() && v->dtype == DType::kFloat32 && v->constant.numel() == n;
}

}  // namespace

int lower_linear(ir::Graph& g, DType all_weights, Isa isa, DType head, int64_t int8_group) {
  int rewritten = 0;
  std::map<std::pair<int, bool>, int> packed;  // (weight value, transposed) -> packed value
  std::map<int, int> scales_of;                // INT8: packed value -> its scales
  for (ir::Node& n : g.nodes) {
    if (n.outputs.empty() || n.outputs[0] < 0) continue;
    const ir::Value* x = g.input(n, 0);
    if (!x || x->dtype != DType::kFloat32 || x->is_constant()) continue;
    if (n.domain != kDomain || n.op_type != "Linear" || !is_matrix(g.input(n, 1))) continue;
    bool transposed = n.attr_int("transB", 0) != 0;
    int bias = n.inputs.size() > 2 ? n.inputs[2] : -1;
    int residual = n.inputs.size() > 3 ? n.inputs[3] : -1;
    int64_t activation = reference::activation_from_name(n.attr_string("activation", ""));
    if (activation < 0) continue;
    int w = n.inputs[1];
    const DType weights =
        head != DType::kUndefined && n.outputs[0] == g.outputs[0] ? head : all_weights;
    auto key = std::make_pair(w, transposed);
    auto it = packed.find(key);
    if (it == packed.end()) {
      const std::string name =
          g.values[static_cast<size_t>(w)].name + (transposed ? ".packedT" : ".packed");
      const Tensor& wt0 = g.values[static_cast<size_t>(w)].constant;
      Tensor scales;
      if (weights == DType::kInt8)
        backends::check_int8_group(
            transposed ? wt0.dim(1) : wt0.dim(0), int8_group,
            n.describe() + " (weights '" + g.values[static_cast<size_t>(w)].name + "')");
      int id = g.add_constant(name, weights == DType::kInt8
                                        ? pack_weights_int8(wt0, transposed, int8_group, &scales)
                                        : pack_weights(wt0, transposed, weights, isa));
      if (weights == DType::kInt8) scales_of[id] = g.add_constant(name + ".scales", scales);
      it = packed.emplace(key, id).first;
    }
    const Tensor& wt = g.values[static_cast<size_t>(w)].constant;
    int64_t k = transposed ? wt.dim(1) : wt.dim(0), cols = transposed ? wt.dim(0) : wt.dim(1);
    ir::Node lowered;
    lowered.name = n.name;
    lowered.op_type = "PackedLinear";
    lowered.domain = kDomain;
    lowered.inputs = {n.inputs[0], it->second, bias, residual};
    while (lowered.inputs.back() < 0) lowered.inputs.pop_back();
    if (weights == DType::kInt8) {  // the scales at input 4 (bias and residual may be absent)
      lowered.inputs.resize(4, -1);
      lowered.inputs.push_back(scales_of.at(it->second));
    }
    lowered.outputs = {n.outputs[0]};
    lowered.attrs["K"] = int_attr(k);
    lowered.attrs["N"] = int_attr(cols);
    if (activation != 0) lowered.attrs["activation"] = int_attr(activation);
    n = std::move(lowered);
    ++rewritten;
  }
  // The tied LM head: an FP32 packed [V, E]^T table serves the embedding lookup too, so the
  // engine stores the table once.
  for (ir::Node& n : g.nodes) {
    if (n.domain != kDomain || n.op_type != "Embedding" || n.inputs.size() < 4) continue;
    auto it = packed.find({n.inputs[2], true});
    if (it == packed.end() || all_weights != DType::kFloat32) continue;
    n.attrs["vocab"] = int_attr(g.values[static_cast<size_t>(n.inputs[2])].constant.dim(0));
    n.inputs[2] = it->second;
    n.attrs["packed"] = int_attr(1);
  }
  return rewritten;
}

int lower_elementwise(ir::Graph& g) {
  int moved = 0;
  for (ir::Node& n : g.nodes) {
    if (!n.domain.empty() || !is_elementwise(n.op_type) || n.outputs.empty() || n.outputs[0] < 0)
      continue;
    if (g.values[static_cast<size_t>(n.outputs[0])].dtype != DType::kFloat32) continue;
    n.domain = kDomain;
    ++moved;
  }
  return moved;
}

int lower_layer_norm(ir::Graph& g) {
  int moved = 0;
  for (ir::Node& n : g.nodes) {
    if (!n.domain.empty() || n.op_type != "LayerNormalization" || n.attr_int("axis", -1) != -1)
      continue;
    const ir::Value* x = g.input(n, 0);
    if (!x || x->dtype != DType::kFloat32 || !x->shape.rank_known || x->shape.dims.empty() ||
        !x->shape.dims.back().is_known())
      continue;
    int64_t e = x->shape.dims.back().value;
    if (!is_vector(g.input(n, 1), e) || !is_vector(g.input(n, 2), e)) continue;
    bool extra_outputs = false;
    for (size_t i = 1; i < n.outputs.size(); ++i)
      extra_outputs = extra_outputs || n.outputs[i] >= 0;
    if (extra_outputs) continue;
    n.domain = kDomain;
    n.op_type = "LayerNorm";
    ++moved;
  }
  return moved;
}

void check_lowered_node(const ir::Graph& g, const ir::Node& n, Isa isa) {
  if (n.domain != kDomain || (n.op_type != "PackedLinear" && n.op_type != "LayerNorm")) return;
  auto bad = [&](const std::string& msg) {
    throw Error(ErrorCode::kParseError, n.describe() + ": " + msg);
  };
  const bool linear = n.op_type == "PackedLinear";
  size_t lo = linear ? 2 : 3, hi = linear ? 5 : 3;
  if (n.inputs.size() < lo || n.inputs.size() > hi)
    bad("has " + std::to_string(n.inputs.size()) + " inputs, expected " + std::to_string(lo) +
        (lo == hi ? "" : " to " + std::to_string(hi)));
  if (n.outputs.size() != 1 || n.outputs[0] < 0) bad("must have exactly one output");
  for (size_t i = 0; i < lo; ++i)
    if (n.inputs[i] < 0) bad("required input " + std::to_string(i) + " is missing");
  const ir::Value& x = *g.input(n, 0);
  const ir::Value& y = g.values[static_cast<size_t>(n.outputs[0])];
  if (x.dtype != DType::kFloat32 || y.dtype != DType::kFloat32)
    bad("input and output must be float32");
  auto last_dim = [](const ir::Value& v) {
    return v.shape.rank_known && !v.shape.dims.empty() && v.shape.dims.back().is_known()
               ? v.shape.dims.back().value
               : -1;
  };
  auto vector_of = [&](size_t i, int64_t count, const char* role) {
    const ir::Value* v = g.input(n, i);
    if (!v) return;
    if (!v->is_constant() || v->constant.dtype() != DType::kFloat32 || v->constant.numel() != count)
      bad(std::string(role) + " '" + v->name + "' must be a float32 constant of " +
          std::to_string(count) + " elements");
  };
  if (!linear) {
    int64_t e = last_dim(x);
    if (e < 1 || last_dim(y) != e) bad("input and output must end in the same known size");
    vector_of(1, e, "scale");
    vector_of(2, e, "bias");
    float eps = n.attr_float("epsilon", 1e-5f);
    if (!std::isfinite(eps) || !(eps > 0)) bad("attribute 'epsilon' must be positive and finite");
    return;
  }
  int64_t k = n.attr_int("K", 0), cols = n.attr_int("N", 0);
  if (k < 1 || cols < 1 || k > (int64_t{1} << 31) || cols > (int64_t{1} << 31))
    bad("attributes K = " + std::to_string(k) + ", N = " + std::to_string(cols) +
        " must be positive");
  int64_t act = n.attr_int("activation", 0);
  if (act != reference::kActNone && act != reference::kActGeluTanh && act != reference::kActGeluErf)
    bad("attribute 'activation' is " + std::to_string(act) + ", expected 0, 1 or 2");
  int64_t xk = last_dim(x), yn = last_dim(y);
  if ((xk >= 0 && xk != k) || (yn >= 0 && yn != cols))
    bad("input " + x.shape.str() + " and output " + y.shape.str() +
        " do not end in K = " + std::to_string(k) + " and N = " + std::to_string(cols));
  const ir::Value& w = *g.input(n, 1);
  DType wt = w.is_constant() ? w.constant.dtype() : DType::kUndefined;
  if (wt != DType::kFloat32 && wt != DType::kBFloat16 && wt != DType::kInt8)
    bad("weights '" + w.name + "' must be a float32, bfloat16 or int8 constant");
  if ((wt == DType::kInt8) != (n.inputs.size() == 5 && n.inputs[4] >= 0))
    bad(wt == DType::kInt8 ? "int8 weights need their scales (input 4)"
                           : "only int8 weights take scales (input 4)");
  Shape want = packed_shape(k, cols, wt, isa);
  if (w.constant.shape() != want)
    bad("weights '" + w.name + "' are " + shape_str(w.constant.shape()) +
        ", packed K = " + std::to_string(k) + ", N = " + std::to_string(cols) + " for " +
        isa_name(isa) + " is " + shape_str(want));
  vector_of(2, cols, "bias");
  if (wt == DType::kInt8) {  // [panels * 16] (per column) or [panels, groups, 16]
    const ir::Value* s = g.input(n, 4);
    const Shape& ss = s->constant.shape();
    const bool grouped = ss.size() == 3 && ss[0] == want[0] && ss[2] == kPanel && ss[1] > 0 &&
                         k % ss[1] == 0 && backends::int8_group_problem(k, k / ss[1]).empty();
    if (!grouped) vector_of(4, want[0] * kPanel, "scales");
    if (!s->is_constant() || s->constant.dtype() != DType::kFloat32)
      bad("scales '" + s->name + "' must be a float32 constant");
  }
  if (const ir::Value* r = g.input(n, 3)) {
    if (r->dtype != DType::kFloat32) bad("the residual must be float32");
  }
}

bool runs_natively(const ir::Node& node) {
  if (node.domain != kDomain || !has_kernel(node.op_type)) return false;
  return !(node.op_type == "Attention" && node.inputs.size() > 2);
}

bool has_kernel(const std::string& op_type) {
  return op_type == "PackedLinear" || op_type == "LayerNorm" || op_type == "Attention" ||
         op_type == "Embedding" || is_elementwise(op_type);
}

namespace {

[[noreturn]] void fail(const ir::Node& node, const std::string& msg) {
  throw Error(ErrorCode::kShapeError, node.describe() + ": " + msg);
}

std::vector<int64_t> as_int64(const Tensor& t) {
  std::vector<int64_t> r(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i)
    r[static_cast<size_t>(i)] =
        t.dtype() == DType::kInt64 ? t.data<int64_t>()[i] : t.data<int32_t>()[i];
  return r;
}

Tensor packed_linear(const ir::Node& node, const std::vector<const Tensor*>& in, Isa isa,
                     ThreadPool& pool, const backends::OutputBuffers& out) {
  // x [..., K] -> y [..., N]
  const Tensor& x = *in[0];
  int64_t k = node.attr_int("K", 0), n = node.attr_int("N", 0);
  if (x.dtype() != DType::kFloat32 || x.rank() == 0 || x.shape().back() != k)
    fail(node, "input " + shape_str(x.shape()) + " does not end in K = " + std::to_string(k));
  Shape out_shape = x.shape();
  out_shape.back() = n;
  Tensor y = out.make(0, DType::kFloat32, out_shape);
  if (y.numel() == 0) return y;  // no rows: nothing to multiply
  const float* bias = in.size() > 2 && in[2] ? in[2]->data<float>() : nullptr;
  Epilogue epi;
  epi.activation = static_cast<int>(node.attr_int("activation", 0));
  if (in.size() > 3 && in[3]) {
    if (in[3]->shape() != out_shape)
      fail(node, "residual " + shape_str(in[3]->shape()) + " is not " + shape_str(out_shape));
    epi.residual = in[3]->data<float>();
  }
  Int8Scales scales;
  if (in.size() > 4 && in[4]) {
    scales.at = in[4]->data<float>();
    scales.groups = in[4]->rank() == 3 ? in[4]->dim(1) : 1;
  }
  gemm_packed(isa, x.data<float>(), x.numel() / k, k, *in[1], n, bias, y.data_mut<float>(), pool,
              epi, scales);
  return y;
}

Tensor embedding(const ir::Node& node, const std::vector<const Tensor*>& in, ThreadPool& pool,
                 const backends::OutputBuffers& buffers) {
  const Tensor& ids_t = *in[0];
  const Tensor* pos_t = in.size() > 1 ? in[1] : nullptr;
  const Tensor& table = *in[2];
  const Tensor& wpe = *in[3];
  // Without position ids, positions continue from a past key's length (with-past exports).
  const Tensor* past = in.size() > 4 ? in[4] : nullptr;
  const int64_t offset = past && past->rank() == 4 ? past->dim(2) : 0;
  bool packed = node.attr_int("packed", 0) != 0;
  int64_t e = wpe.dim(1), vocab = packed ? node.attr_int("vocab", 0) : table.dim(0);
  if (ids_t.rank() != 2)
    fail(node, "token ids must be [batch, seq], found " + shape_str(ids_t.shape()));
  int64_t b = ids_t.dim(0), s = ids_t.dim(1);
  std::vector<int64_t> ids = as_int64(ids_t), pos(static_cast<size_t>(b * s));
  std::vector<int64_t> given = pos_t ? as_int64(*pos_t) : std::vector<int64_t>{};
  if (pos_t &&
      !(pos_t->rank() == 2 && pos_t->dim(1) == s && (pos_t->dim(0) == b || pos_t->dim(0) == 1)))
    fail(node, "position_ids " + shape_str(pos_t->shape()) + " does not match ids " +
                   shape_str(ids_t.shape()));
  for (int64_t r = 0; r < b; ++r) {
    for (int64_t t = 0; t < s; ++t) {
      size_t i = static_cast<size_t>(r * s + t);
      pos[i] =
          pos_t ? given[static_cast<size_t>((pos_t->dim(0) == 1 ? 0 : r) * s + t)] : offset + t;
      if (ids[i] < 0 || ids[i] >= vocab)
        fail(node, "token id " + std::to_string(ids[i]) + " is outside [0, " +
                       std::to_string(vocab) + ")");
      if (pos[i] < 0 || pos[i] >= wpe.dim(0))
        fail(node, "position " + std::to_string(pos[i]) + " is outside [0, " +
                       std::to_string(wpe.dim(0)) + ")");
    }
  }
  Tensor out = buffers.make(0, DType::kFloat32, {b, s, e});
  if (out.numel() == 0) return out;
  if (!packed) {
    embedding_rows(ids.data(), pos.data(), table.data<float>(), wpe.data<float>(), b * s, e,
                   out.data_mut<float>(), pool);
    return out;
  }
  // Row v of the table is column v of the packed LM head: panel v/16, lane v%16, stride 16.
  const float* p = table.data<float>();
  for (int64_t i = 0; i < b * s; ++i) {
    const float* col = p + (ids[static_cast<size_t>(i)] / kPanel) * e * kPanel +
                       ids[static_cast<size_t>(i)] % kPanel;
    const float* q = wpe.data<float>() + pos[static_cast<size_t>(i)] * e;
    float* o = out.data_mut<float>() + i * e;
    for (int64_t k = 0; k < e; ++k) o[k] = col[k * kPanel] + q[k];
  }
  return out;
}

Tensor attention(const ir::Node& node, const std::vector<const Tensor*>& in, ThreadPool& pool,
                 const backends::OutputBuffers& buffers) {
  const Tensor& qkv = *in[0];
  const Tensor* mask = in.size() > 1 ? in[1] : nullptr;
  int64_t heads = node.attr_int("num_heads", 0);
  if (qkv.dtype() != DType::kFloat32 || qkv.rank() != 3 || heads <= 0 ||
      qkv.dim(2) % (3 * heads) != 0)
    fail(node, "needs float32 qkv [B,S,3E] with 3E divisible by 3 * num_heads, found " +
                   shape_str(qkv.shape()));
  int64_t b = qkv.dim(0), s = qkv.dim(1), e = qkv.dim(2) / 3;
  std::vector<uint8_t> valid;
  if (mask) {
    if (mask->shape() != Shape{b, s})
      fail(node, "mask " + shape_str(mask->shape()) + " is not [B,S] of qkv");
    valid.resize(static_cast<size_t>(b * s));
    for (int64_t i = 0; i < b * s; ++i)
      valid[static_cast<size_t>(i)] = reference::nonzero(*mask, i) ? 1 : 0;
  }
  Tensor out = buffers.make(0, DType::kFloat32, {b, s, e});
  if (out.numel() == 0) return out;
  causal_attention(qkv.data<float>(), mask ? valid.data() : nullptr, b, s, e, heads,
                   node.attr_float("scale", 1.f), out.data_mut<float>(), pool);
  return out;
}

Tensor layer_norm(const ir::Node& node, const std::vector<const Tensor*>& in, ThreadPool& pool,
                  const backends::OutputBuffers& out) {
  const Tensor& x = *in[0];
  int64_t e = in[1]->numel();
  if (x.dtype() != DType::kFloat32 || x.rank() == 0 || x.shape().back() != e)
    fail(node, "input " + shape_str(x.shape()) + " does not end in " + std::to_string(e));
  Tensor y = out.make(0, DType::kFloat32, x.shape());
  if (y.numel() == 0) return y;
  layer_norm_rows(x.data<float>(), in[1]->data<float>(), in[2]->data<float>(),
                  node.attr_float("epsilon", 1e-5f), y.data_mut<float>(), x.numel() / e, e, pool);
  return y;
}

}  // namespace

std::vector<Tensor> run_node(const ir::Node& node, const std::vector<const Tensor*>& inputs,
                             Isa isa, ThreadPool& pool, const backends::OutputBuffers& out) {
  if (is_elementwise(node.op_type)) return run_elementwise(node, inputs, pool, out);
  for (size_t i = 0; i < std::min<size_t>(inputs.size(), 1); ++i)
    if (!inputs[i]) fail(node, "required input is missing");
  if (node.op_type == "PackedLinear" && inputs.size() >= 2 && inputs[1])
    return {packed_linear(node, inputs, isa, pool, out)};
  if (node.op_type == "LayerNorm" && inputs.size() == 3 && inputs[1] && inputs[2])
    return {layer_norm(node, inputs, pool, out)};
  if (node.op_type == "Attention") return {attention(node, inputs, pool, out)};
  if (node.op_type == "Embedding" && inputs.size() >= 4 && inputs.size() <= 5 && inputs[2] &&
      inputs[3])
    return {embedding(node, inputs, pool, out)};
  throw Error(ErrorCode::kInternal, node.describe() + ": not a CPU backend op");
}

}  // namespace gptrt::cpu

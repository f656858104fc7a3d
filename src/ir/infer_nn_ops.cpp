// Shape inference of MatMul, Gemm, reductions, LayerNormalization and the gptrt fused ops.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <set>

#include "gptrt/error.h"
#include "ir/infer_common.h"
#include "ir/op_math.h"
#include "ir/shape_inference.h"
#include "platform/compiler.h"

namespace gptrt::ir::infer {

void infer_matmul(Graph& g, const Node& n) {
  const Value& a = in(g, n, 0);
  const Value& b = in(g, n, 1);
  require_float(n, a);
  if (!a.shape.rank_known || !b.shape.rank_known) {
    set(g, n, 0, a.dtype, SymShape{});
    return;
  }
  std::vector<Dim> ad = a.shape.dims, bd = b.shape.dims;
  if (ad.empty() || bd.empty()) fail(n, "MatMul inputs must not be scalars");
  bool a1 = ad.size() == 1, b1 = bd.size() == 1;
  if (a1) ad.insert(ad.begin(), Dim::known(1));
  if (b1) bd.push_back(Dim::known(1));
  const Dim& ka = ad.back();
  const Dim& kb = bd[bd.size() - 2];
  if (ka.is_known() && kb.is_known() && ka.value != kb.value) {
    fail(n, "inner dimensions differ: " + a.shape.str() + " x " + b.shape.str());
  }
  SymShape batch_a = SymShape::of(std::vector<Dim>(ad.begin(), ad.end() - 2));
  SymShape batch_b = SymShape::of(std::vector<Dim>(bd.begin(), bd.end() - 2));
  SymShape s = broadcast(n, batch_a, batch_b);
  if (!a1) s.dims.push_back(ad[ad.size() - 2]);
  if (!b1) s.dims.push_back(bd.back());
  set(g, n, 0, a.dtype, s);
}

void infer_gemm(Graph& g, const Node& n) {
  const Value& a = in(g, n, 0);
  const Value& b = in(g, n, 1);
  require_float(n, a);
  if (!a.shape.rank_known || !b.shape.rank_known) {
    set(g, n, 0, a.dtype, SymShape::of({Dim::unknown(), Dim::unknown()}));
    return;
  }
  if (a.shape.dims.size() != 2 || b.shape.dims.size() != 2)
    fail(n, "Gemm inputs must be 2-D, found " + a.shape.str() + " and " + b.shape.str());
  bool ta = n.attr_int("transA", 0) != 0, tb = n.attr_int("transB", 0) != 0;
  Dim m = a.shape.dims[ta ? 1 : 0];
  Dim ka = a.shape.dims[ta ? 0 : 1];
  Dim kb = b.shape.dims[tb ? 1 : 0];
  Dim nn = b.shape.dims[tb ? 0 : 1];
  if (ka.is_known() && kb.is_known() && ka.value != kb.value)
    fail(n, "inner dimensions differ: " + a.shape.str() + " x " + b.shape.str());
  set(g, n, 0, a.dtype, SymShape::of({m, nn}));
}

void infer_reduce(Graph& g, const Node& n, bool axes_from_input) {
  const Value& x = in(g, n, 0);
  bool keep = n.attr_int("keepdims", 1) != 0;
  auto axes = axes_of(g, n, 1, axes_from_input);
  if (!x.shape.rank_known || !axes) {
    set(g, n, 0, x.dtype, SymShape{});
    return;
  }
  bool noop = axes->empty() && n.attr_int("noop_with_empty_axes", 0) != 0;
  std::set<int64_t> red;
  for (int64_t a : *axes) red.insert(normalize_axis(n, a, x.shape.dims.size()));
  std::vector<Dim> dims;
  for (size_t i = 0; i < x.shape.dims.size(); ++i) {
    bool r = !noop && (axes->empty() || red.count(static_cast<int64_t>(i)));
    if (!r)
      dims.push_back(x.shape.dims[i]);
    else if (keep)
      dims.push_back(Dim::known(1));
  }
  set(g, n, 0, n.op_type == "ArgMax" ? DType::kInt64 : x.dtype, SymShape::of(dims));
}

namespace {

// Elements of a shape's dims [from, end) when all are known, else -1.
int64_t known_count(const SymShape& s, size_t from) {
  if (!s.rank_known) return -1;
  int64_t n = 1;
  for (size_t k = from; k < s.dims.size(); ++k) {
    if (!s.dims[k].is_known()) return -1;
    if (platform::mul_overflows(n, s.dims[k].value, &n)) return -1;
  }
  return n;
}

// A weight-like input: its dtype is `dtype` and, when its shape is known, it has `count`
// elements (count -1: any).
void require_table(const Node& n, const Value& v, const char* role, DType dtype, int64_t count) {
  if (v.dtype != dtype)
    fail(n, std::string(role) + " '" + v.name + "' is " + dtype_name(v.dtype) + ", expected " +
                dtype_name(dtype) + " like the input");
  int64_t have = known_count(v.shape, 0);
  if (count >= 0 && have >= 0 && have != count)
    fail(n, std::string(role) + " '" + v.name + "' has " + std::to_string(have) +
                " elements, expected " + std::to_string(count));
}

void require_finite(const Node& n, const char* attr, float v, bool positive) {
  if (!std::isfinite(v) || (positive && !(v > 0)))
    fail(n, std::string("attribute '") + attr + "' is " + std::to_string(v) + ", expected a " +
                (positive ? "positive " : "") + "finite number");
}

void require_flag(const Node& n, const char* attr) {
  int64_t v = n.attr_int(attr, 0);
  if (v != 0 && v != 1)
    fail(n, std::string("attribute '") + attr + "' is " + std::to_string(v) + ", expected 0 or 1");
}

bool is_index_dtype(DType d) {
  return d == DType::kInt64 || d == DType::kInt32;
}

}  // namespace

void infer_layer_norm(Graph& g, const Node& n) {
  const Value& x = in(g, n, 0);
  require_float(n, x);
  require_finite(n, "epsilon", n.attr_float("epsilon", 1e-5f), true);
  int64_t cols = -1;
  if (x.shape.rank_known) {
    auto axis = static_cast<size_t>(normalize_axis(n, n.attr_int("axis", -1), x.shape.dims.size()));
    cols = known_count(x.shape, axis);
  }
  require_table(n, in(g, n, 1), "scale", x.dtype, cols);
  if (g.input(n, 2)) require_table(n, in(g, n, 2), "bias", x.dtype, cols);
  set(g, n, 0, x.dtype, x.shape);
  for (size_t i = 1; i < 3; ++i) {
    if (!has_output(n, i)) continue;
    SymShape s = x.shape;
    if (s.rank_known) {
      int64_t axis = normalize_axis(n, n.attr_int("axis", -1), s.dims.size());
      for (size_t k = static_cast<size_t>(axis); k < s.dims.size(); ++k) s.dims[k] = Dim::known(1);
    }
    set(g, n, i, DType::kFloat32, s);
  }
}

// The gptrt domain: fused ops the passes create (never imported from a file), checked as
// strictly as their kernels read them: an engine file's plan is validated with these.
void infer_embedding(Graph& g, const Node& n) {
  const Value& ids = in(g, n, 0);
  const Value& table = in(g, n, 2);
  const Value& wpe = in(g, n, 3);
  if (!is_index_dtype(ids.dtype))
    fail(n, std::string("token ids must be int64 or int32, found ") + dtype_name(ids.dtype));
  if (ids.shape.rank_known && ids.shape.dims.size() != 2)
    fail(n, "token ids must be [batch, seq], found " + ids.shape.str());
  if (const Value* pos = g.input(n, 1)) {
    if (!is_index_dtype(pos->dtype))
      fail(n, std::string("position ids must be int64 or int32, found ") + dtype_name(pos->dtype));
    if (pos->shape.rank_known && pos->shape.dims.size() != 2)
      fail(n, "position ids must be [batch, seq], found " + pos->shape.str());
  }
  require_float(n, wpe);
  if (!wpe.shape.rank_known || wpe.shape.dims.size() != 2)
    fail(n, "the position table must be 2-D, found " + wpe.shape.str());
  const Dim& e = wpe.shape.dims[1];
  require_flag(n, "packed");
  if (n.attr_int("packed", 0)) {
    // The tied LM head's packed table [ceil(V/16), E, 16] serves the lookup (cpu backend).
    int64_t vocab = n.attr_int("vocab", 0);
    if (vocab < 1) fail(n, "attribute 'vocab' is " + std::to_string(vocab) + ", expected >= 1");
    Dim panels = Dim::known((vocab + 15) / 16);
    if (!table.shape.rank_known || table.shape.dims.size() != 3 ||
        !(table.shape.dims[0] == panels) || !(table.shape.dims[1] == e) ||
        !(table.shape.dims[2] == Dim::known(16)))
      fail(n, "the packed token table is " + table.shape.str() + ", expected [" + panels.str() +
                  ", " + e.str() + ", 16] for vocab " + std::to_string(vocab));
  } else if (!table.shape.rank_known || table.shape.dims.size() != 2 ||
             !(table.shape.dims[1] == e)) {
    fail(n, "the token table must be [vocab, " + e.str() + "] like the position table " +
                wpe.shape.str() + ", found " + table.shape.str());
  }
  if (table.dtype != wpe.dtype)
    fail(n, std::string("the token table is ") + dtype_name(table.dtype) + ", the position table " +
                dtype_name(wpe.dtype));
  if (const Value* past = g.input(n, 4)) {
    // Positions continue from the past's length (dim 2 of a past key) when none are given.
    if (past->shape.rank_known && past->shape.dims.size() != 4)
      fail(n, "the past (input 4) must be [batch, heads, past, head size], found " +
                  past->shape.str());
  }
  SymShape s = ids.shape;
  if (s.rank_known) s.dims.push_back(e);
  set(g, n, 0, wpe.dtype, s);
}

void infer_cache_gate(Graph& g, const Node& n) {
  const Value& past = in(g, n, 0);
  const Value& flag = in(g, n, 1);
  require_float(n, past);
  if (flag.dtype != DType::kBool)
    fail(n, std::string("the flag is ") + dtype_name(flag.dtype) + ", expected bool");
  SymShape s = past.shape;
  if (s.rank_known && s.dims.size() != 4)
    fail(n, "the past must be [batch, heads, past, head size], found " + s.str());
  if (s.rank_known) s.dims[2] = Dim::unknown();
  set(g, n, 0, past.dtype, s);
}

void infer_linear(Graph& g, const Node& n) {
  const Value& x = in(g, n, 0);
  const Value& w = in(g, n, 1);
  require_float(n, x);
  // The weight is the input's type, or a backend's 16-bit storage of it (cuda FP16/BF16), or
  // INT8 with its scales (input 4, one float32 per output column: cuda INT8 engines).
  const bool half_storage = w.dtype == DType::kFloat16 || w.dtype == DType::kBFloat16;
  const Value* scales = g.input(n, 4);
  if ((w.dtype == DType::kInt8) != (scales != nullptr))
    fail(n, w.dtype == DType::kInt8 ? "INT8 weights need their scales (input 4)"
                                    : "only INT8 weights take scales (input 4)");
  if (w.dtype != x.dtype && !(x.dtype == DType::kFloat32 && (half_storage || scales)))
    fail(n, std::string("the weight is ") + dtype_name(w.dtype) + ", the input " +
                dtype_name(x.dtype));
  if (!w.shape.rank_known || w.shape.dims.size() != 2)
    fail(n, "the weight must be 2-D, found " + w.shape.str());
  require_flag(n, "transB");
  std::string act = n.attr_string("activation", "");
  if (act != "" && act != "none" && act != "gelu_tanh" && act != "gelu_erf")
    fail(n, "attribute 'activation' is '" + act + "', expected none, gelu_tanh or gelu_erf");
  require_flag(n, "layer_norm_prologue");
  require_flag(n, "attention_follows");
  bool trans_b = n.attr_int("transB", 0) != 0;
  const Dim& k = w.shape.dims[trans_b ? 1 : 0];
  const Dim& cols = w.shape.dims[trans_b ? 0 : 1];
  if (x.shape.rank_known) {
    if (x.shape.dims.empty()) fail(n, "the input must not be a scalar");
    const Dim& xk = x.shape.dims.back();
    if (xk.is_known() && k.is_known() && xk.value != k.value)
      fail(n, "the input " + x.shape.str() + " does not end in K = " + k.str() + " of the weight " +
                  w.shape.str());
  }
  // (The bias as the weight is stored, or FP16 beside INT8 weights, or the input's type.)
  if (const Value* bias = g.input(n, 2))
    require_table(n, *bias, "bias",
                  bias->dtype == w.dtype || (scales && bias->dtype == DType::kFloat16) ? bias->dtype
                                                                                       : x.dtype,
                  cols.is_known() ? cols.value : -1);
  // (Scales [N], or [N, groups] for groups of K / groups values along K.)
  if (scales && scales->shape.rank_known && scales->shape.dims.size() == 2) {
    const Dim& groups = scales->shape.dims[1];
    if (groups.is_known() && k.is_known() && (groups.value < 1 || k.value % groups.value != 0))
      fail(n, "the scales " + scales->shape.str() + " do not split K = " + k.str() +
                  " into whole groups");
    if (scales->shape.dims[0].is_known() && cols.is_known() &&
        scales->shape.dims[0].value != cols.value)
      fail(n, "the scales " + scales->shape.str() + " are not one row per output column (" +
                  cols.str() + ")");
    if (scales->dtype != DType::kFloat32)
      fail(n, std::string("the scales are ") + dtype_name(scales->dtype) + ", expected float32");
  } else if (scales) {
    require_table(n, *scales, "scales", DType::kFloat32, cols.is_known() ? cols.value : -1);
  }
  SymShape s = x.shape;
  if (s.rank_known) s.dims.back() = cols;
  if (const Value* res = g.input(n, 3)) {
    if (res->dtype != x.dtype)
      fail(n, std::string("the residual is ") + dtype_name(res->dtype) + ", the input " +
                  dtype_name(x.dtype));
    bool same = !res->shape.rank_known || !s.rank_known || res->shape.dims.size() == s.dims.size();
    for (size_t d = 0; same && s.rank_known && res->shape.rank_known && d < s.dims.size(); ++d)
      same = !res->shape.dims[d].is_known() || !s.dims[d].is_known() ||
             res->shape.dims[d].value == s.dims[d].value;
    if (!same) fail(n, "the residual " + res->shape.str() + " is not the output shape " + s.str());
  }
  set(g, n, 0, x.dtype, s);
}

void infer_attention(Graph& g, const Node& n) {
  const Value& qkv = in(g, n, 0);
  require_float(n, qkv);
  int64_t heads = n.attr_int("num_heads", 0);
  if (heads < 1 || heads > (int64_t{1} << 20))
    fail(n, "attribute 'num_heads' is " + std::to_string(heads) + ", expected >= 1");
  require_finite(n, "scale", n.attr_float("scale", 1.f), true);
  if (const Value* mask = g.input(n, 1)) {
    if (mask->dtype != DType::kInt64 && mask->dtype != DType::kInt32 &&
        mask->dtype != DType::kBool && mask->dtype != DType::kFloat32)
      fail(n, std::string("the mask is ") + dtype_name(mask->dtype) +
                  ", expected int64, int32, bool or float32");
    if (mask->shape.rank_known && mask->shape.dims.size() != 2)
      fail(n, "the mask must be [batch, seq], found " + mask->shape.str());
  }
  const Value* past_k = g.input(n, 2);
  const Value* past_v = g.input(n, 3);
  const bool any_present = has_output(n, 1) || has_output(n, 2);
  const bool both_presents = has_output(n, 1) && has_output(n, 2);
  if ((past_k == nullptr) != (past_v == nullptr) || (past_k ? !both_presents : any_present))
    fail(n,
         "takes a past key and value (inputs 2, 3) and gives the present key and value "
         "(outputs 1, 2) together, or none of them");
  SymShape present;
  if (past_k) {
    for (const Value* p : {past_k, past_v}) {
      if (p->dtype != qkv.dtype)
        fail(n, std::string("the past '") + p->name + "' is " + dtype_name(p->dtype) + ", qkv is " +
                    dtype_name(qkv.dtype));
      if (p->shape.rank_known && p->shape.dims.size() != 4)
        fail(n, "the past '" + p->name + "' must be [batch, heads, past, head size], found " +
                    p->shape.str());
      if (p->shape.rank_known && p->shape.dims[1].is_known() && p->shape.dims[1].value != heads)
        fail(n, "the past '" + p->name + "' has " + p->shape.dims[1].str() +
                    " heads, num_heads is " + std::to_string(heads));
    }
    present = past_k->shape;
    if (present.rank_known && qkv.shape.rank_known && qkv.shape.dims.size() == 3)
      present.dims[2] = add_dims(present.dims[2], qkv.shape.dims[1]);
    else if (present.rank_known)
      present.dims[2] = Dim::unknown();
  }
  SymShape s = qkv.shape;
  if (s.rank_known) {
    if (s.dims.size() != 3) fail(n, "qkv must be [batch, seq, 3*hidden], found " + s.str());
    Dim& last = s.dims.back();
    if (last.is_known()) {
      if (last.value % (3 * heads) != 0)
        fail(n, "qkv's last dim " + last.str() +
                    " is not a multiple of 3 * num_heads = " + std::to_string(3 * heads));
      last = Dim::known(last.value / 3);
    } else {
      last = Dim::unknown();
    }
  }
  set(g, n, 0, qkv.dtype, s);
  if (past_k) {
    set(g, n, 1, qkv.dtype, present);
    set(g, n, 2, qkv.dtype, present);
  }
}

}  // namespace gptrt::ir::infer

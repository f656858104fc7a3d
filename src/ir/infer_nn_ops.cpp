// Shape inference of MatMul, Gemm, reductions, LayerNormalization and the gptrt fused ops.
#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <set>

#include "gptrt/error.h"
#include "ir/infer_common.h"
#include "ir/op_math.h"
#include "ir/shape_inference.h"

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

void infer_layer_norm(Graph& g, const Node& n) {
  const Value& x = in(g, n, 0);
  require_float(n, x);
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

// The gptrt domain: fused ops the passes create (never imported from a file).
void infer_embedding(Graph& g, const Node& n) {
  const Value& ids = in(g, n, 0);
  const Value& wte = in(g, n, 2);
  if (ids.dtype != DType::kInt64 && ids.dtype != DType::kInt32)
    fail(n, std::string("token ids must be int64 or int32, found ") + dtype_name(ids.dtype));
  if (!wte.shape.rank_known || wte.shape.dims.size() != 2)
    fail(n, "the token table must be 2-D, found " + wte.shape.str());
  SymShape s = ids.shape;
  if (s.rank_known) s.dims.push_back(wte.shape.dims[1]);
  set(g, n, 0, wte.dtype, s);
}

void infer_linear(Graph& g, const Node& n) {
  const Value& x = in(g, n, 0);
  const Value& w = in(g, n, 1);
  require_float(n, x);
  if (!w.shape.rank_known || w.shape.dims.size() != 2)
    fail(n, "the weight must be 2-D, found " + w.shape.str());
  bool trans_b = n.attr_int("transB", 0) != 0;
  SymShape s = x.shape;
  if (s.rank_known && !s.dims.empty()) s.dims.back() = w.shape.dims[trans_b ? 0 : 1];
  set(g, n, 0, x.dtype, s);
}

void infer_attention(Graph& g, const Node& n) {
  const Value& qkv = in(g, n, 0);
  require_float(n, qkv);
  SymShape s = qkv.shape;
  if (s.rank_known) {
    if (s.dims.size() != 3) fail(n, "qkv must be [batch, seq, 3*hidden], found " + s.str());
    Dim& last = s.dims.back();
    if (last.is_known()) {
      if (last.value % 3 != 0)
        fail(n, "qkv's last dim must be a multiple of 3, found " + last.str());
      last = Dim::known(last.value / 3);
    } else {
      last = Dim::unknown();
    }
  }
  set(g, n, 0, qkv.dtype, s);
}

}  // namespace gptrt::ir::infer

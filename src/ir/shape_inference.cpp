#include "ir/shape_inference.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <set>
#include <unordered_map>

#include "gptrt/error.h"
#include "ir/op_math.h"

namespace gptrt::ir {
namespace {

using InferFn = std::function<void(Graph&, const Node&)>;

struct OpEntry {
  int64_t since;  // first default-domain opset with the semantics gptrt implements
  InferFn infer;
};

[[noreturn]] void fail(const Node& n, const std::string& msg) {
  throw Error(ErrorCode::kShapeError, n.describe() + ": " + msg);
}

Value& out(Graph& g, const Node& n, size_t i) {
  return g.values[n.outputs[i]];
}

const Value& in(const Graph& g, const Node& n, size_t i) {
  const Value* v = g.input(n, i);
  if (!v) fail(n, "required input " + std::to_string(i) + " is missing");
  return *v;
}

bool has_output(const Node& n, size_t i) {
  return i < n.outputs.size() && n.outputs[i] >= 0;
}

int64_t normalize_axis(const Node& n, int64_t axis, size_t rank) {
  int64_t r = static_cast<int64_t>(rank);
  if (axis < -r || axis >= r)
    fail(n, "axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  return axis < 0 ? axis + r : axis;
}

Dim mul_dims(const Dim& a, const Dim& b) {
  if (a.is_known() && b.is_known()) return Dim::known(a.value * b.value);
  if (a.is_known() && a.value == 1) return b;
  if (b.is_known() && b.value == 1) return a;
  if ((a.is_known() && a.value == 0) || (b.is_known() && b.value == 0)) return Dim::known(0);
  if (a.symbol == "?" || b.symbol == "?") return Dim::unknown();
  return Dim::sym("(" + a.str() + "*" + b.str() + ")");
}

Dim add_dims(const Dim& a, const Dim& b) {
  if (a.is_known() && b.is_known()) return Dim::known(a.value + b.value);
  if (a.is_known() && a.value == 0) return b;
  if (b.is_known() && b.value == 0) return a;
  if (a.symbol == "?" || b.symbol == "?") return Dim::unknown();
  return Dim::sym("(" + a.str() + "+" + b.str() + ")");
}

Dim sub_dims(const Dim& a, const Dim& b) {
  if (a.is_known() && b.is_known()) return Dim::known(a.value - b.value);
  if (b.is_known() && b.value == 0) return a;
  if (a == b) return Dim::known(0);
  if (a.symbol == "?" || b.symbol == "?") return Dim::unknown();
  return Dim::sym("(" + a.str() + "-" + b.str() + ")");
}

Dim div_dims(const Dim& a, const Dim& b) {
  if (a.is_known() && b.is_known() && b.value != 0) {
    // ONNX integer Div truncates toward zero; shapes are non-negative so this is floor.
    return Dim::known(a.value / b.value);
  }
  if (b.is_known() && b.value == 1) return a;
  if (a == b) return Dim::known(1);
  if (a.symbol == "?" || b.symbol == "?") return Dim::unknown();
  return Dim::sym("(" + a.str() + "/" + b.str() + ")");
}

// Broadcast two shapes with numpy rules. Unknown-vs-symbol picks the symbol.
SymShape broadcast(const Node& n, const SymShape& a, const SymShape& b) {
  if (!a.rank_known || !b.rank_known) return SymShape{};
  size_t r = std::max(a.dims.size(), b.dims.size());
  SymShape o{true, std::vector<Dim>(r)};
  for (size_t i = 0; i < r; ++i) {
    const Dim* da = i + a.dims.size() >= r ? &a.dims[i + a.dims.size() - r] : nullptr;
    const Dim* db = i + b.dims.size() >= r ? &b.dims[i + b.dims.size() - r] : nullptr;
    Dim x = da ? *da : Dim::known(1);
    Dim y = db ? *db : Dim::known(1);
    if (x.is_known() && x.value == 1) {
      o.dims[i] = y;
    } else if (y.is_known() && y.value == 1) {
      o.dims[i] = x;
    } else if (x.is_known() && y.is_known()) {
      if (x.value != y.value) fail(n, "cannot broadcast " + a.str() + " with " + b.str());
      o.dims[i] = x;
    } else if (x.is_known()) {
      o.dims[i] = x;
    } else if (y.is_known()) {
      o.dims[i] = y;
    } else {
      o.dims[i] = x.symbol == "?" ? y : x;
    }
  }
  return o;
}

void set(Graph& g, const Node& n, size_t i, DType dtype, SymShape shape) {
  if (!has_output(n, i)) return;
  Value& v = out(g, n, i);
  v.dtype = dtype;
  v.shape = std::move(shape);
  v.sym_value.reset();
}

void require_float(const Node& n, const Value& v) {
  if (v.dtype != DType::kFloat32 && v.dtype != DType::kFloat64 && v.dtype != DType::kUndefined) {
    throw Error(ErrorCode::kUnsupported, n.describe() + ": input '" + v.name + "' is " +
                                             dtype_name(v.dtype) +
                                             "; gptrt runs this op on float32 (and float64) only");
  }
}

// Elementwise sym_value arithmetic for shape computations (Add/Sub/Mul/Div on small ints).
void elementwise_sym(Graph& g, const Node& n, const std::function<Dim(const Dim&, const Dim&)>& f) {
  auto a = symbolic_ints(g.input(n, 0));
  auto b = symbolic_ints(g.input(n, 1));
  if (!a || !b) return;
  size_t na = a->size(), nb = b->size();
  if (na != nb && na != 1 && nb != 1) return;
  std::vector<Dim> r(std::max(na, nb));
  for (size_t i = 0; i < r.size(); ++i) r[i] = f((*a)[na == 1 ? 0 : i], (*b)[nb == 1 ? 0 : i]);
  out(g, n, 0).sym_value = r;
}

void infer_binary(Graph& g, const Node& n, bool to_bool) {
  SymShape s = in(g, n, 0).shape;
  for (size_t i = 1; i < n.inputs.size(); ++i) s = broadcast(n, s, in(g, n, i).shape);
  DType dt = in(g, n, 0).dtype;
  if (!to_bool && n.op_type != "Pow") {
    for (size_t i = 1; i < n.inputs.size(); ++i) {
      DType other = in(g, n, i).dtype;
      if (dt != DType::kUndefined && other != DType::kUndefined && other != dt) {
        fail(n, std::string("inputs have different dtypes (") + dtype_name(dt) + " and " +
                    dtype_name(other) + ")");
      }
    }
  }
  set(g, n, 0, to_bool ? DType::kBool : dt, s);
}

void infer_unary(Graph& g, const Node& n) {
  const Value& x = in(g, n, 0);
  set(g, n, 0, x.dtype, x.shape);
}

// Shape of an output built from a 1-D shape tensor input (Reshape, Expand, ConstantOfShape).
std::optional<std::vector<Dim>> shape_operand(const Graph& g, const Node& n, size_t i) {
  const Value* v = g.input(n, i);
  if (!v) return std::nullopt;
  return symbolic_ints(v);
}

SymShape unknown_rank_shape(const Graph& g, const Node& n, size_t i) {
  const Value* v = g.input(n, i);
  if (v && v->shape.rank_known && v->shape.dims.size() == 1 && v->shape.dims[0].is_known()) {
    return SymShape::of(
        std::vector<Dim>(static_cast<size_t>(v->shape.dims[0].value), Dim::unknown()));
  }
  return SymShape{};
}

void infer_reshape(Graph& g, const Node& n) {
  const Value& x = in(g, n, 0);
  auto target = shape_operand(g, n, 1);
  if (!target) {
    set(g, n, 0, x.dtype, unknown_rank_shape(g, n, 1));
    return;
  }
  bool allowzero = n.attr_int("allowzero", 0) != 0;
  std::vector<Dim> dims = *target;
  int infer_at = -1;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i].is_known() && dims[i].value == 0 && !allowzero) {
      if (!x.shape.rank_known || i >= x.shape.dims.size()) {
        dims[i] = Dim::unknown();
      } else {
        dims[i] = x.shape.dims[i];
      }
    } else if (dims[i].is_known() && dims[i].value == -1) {
      if (infer_at >= 0) fail(n, "shape has more than one -1");
      infer_at = static_cast<int>(i);
    } else if (dims[i].is_known() && dims[i].value < -1) {
      fail(n, "shape has negative dimension " + std::to_string(dims[i].value));
    }
  }
  if (infer_at >= 0) {
    Dim inferred = Dim::unknown();
    if (x.shape.rank_known) {
      // Cancel equal factors of input and output, then divide what is left.
      std::vector<Dim> rest = x.shape.dims;
      std::vector<Dim> others;
      for (size_t i = 0; i < dims.size(); ++i) {
        if (static_cast<int>(i) == infer_at) continue;
        auto it = std::find(rest.begin(), rest.end(), dims[i]);
        if (!dims[i].is_known() && it != rest.end()) {
          rest.erase(it);
        } else if (dims[i].is_known() && it != rest.end()) {
          rest.erase(it);
        } else {
          others.push_back(dims[i]);
        }
      }
      Dim num = Dim::known(1), den = Dim::known(1);
      for (const Dim& d : rest) num = mul_dims(num, d);
      for (const Dim& d : others) den = mul_dims(den, d);
      inferred = div_dims(num, den);
    }
    dims[infer_at] = inferred;
  }
  set(g, n, 0, x.dtype, SymShape::of(dims));
  auto sv = symbolic_ints(&x);
  if (sv && has_output(n, 0)) out(g, n, 0).sym_value = sv;
}

std::optional<std::vector<int64_t>> axes_of(const Graph& g, const Node& n, size_t input_index,
                                            bool from_input) {
  if (from_input) {
    const Value* v = g.input(n, input_index);
    if (!v) return std::vector<int64_t>{};
    return constant_ints(v);
  }
  return n.attr_ints("axes");
}

void infer_squeeze(Graph& g, const Node& n) {
  const Value& x = in(g, n, 0);
  auto axes = axes_of(g, n, 1, g.opset >= 13);
  if (!axes || !x.shape.rank_known) {
    set(g, n, 0, x.dtype, SymShape{});
    return;
  }
  std::vector<Dim> dims;
  std::set<int64_t> drop;
  for (int64_t a : *axes) drop.insert(normalize_axis(n, a, x.shape.dims.size()));
  for (size_t i = 0; i < x.shape.dims.size(); ++i) {
    const Dim& d = x.shape.dims[i];
    bool squeeze =
        axes->empty() ? (d.is_known() && d.value == 1) : drop.count(static_cast<int64_t>(i)) > 0;
    if (squeeze && d.is_known() && d.value != 1)
      fail(n, "cannot squeeze dimension " + std::to_string(i) + " of size " + d.str());
    if (!squeeze) dims.push_back(d);
  }
  set(g, n, 0, x.dtype, SymShape::of(dims));
  if (auto sv = symbolic_ints(&x)) out(g, n, 0).sym_value = sv;
}

void infer_unsqueeze(Graph& g, const Node& n) {
  const Value& x = in(g, n, 0);
  auto axes = axes_of(g, n, 1, g.opset >= 13);
  if (!axes || !x.shape.rank_known) {
    set(g, n, 0, x.dtype, SymShape{});
    return;
  }
  size_t r = x.shape.dims.size() + axes->size();
  std::set<int64_t> ins;
  for (int64_t a : *axes) ins.insert(normalize_axis(n, a, r));
  if (ins.size() != axes->size()) fail(n, "repeated axis");
  std::vector<Dim> dims;
  size_t k = 0;
  for (size_t i = 0; i < r; ++i) {
    if (ins.count(static_cast<int64_t>(i)))
      dims.push_back(Dim::known(1));
    else
      dims.push_back(x.shape.dims[k++]);
  }
  set(g, n, 0, x.dtype, SymShape::of(dims));
  if (auto sv = symbolic_ints(&x)) out(g, n, 0).sym_value = sv;
}

void infer_concat(Graph& g, const Node& n) {
  const Value& x0 = in(g, n, 0);
  SymShape s = x0.shape;
  bool all_known_rank = true;
  for (size_t i = 0; i < n.inputs.size(); ++i)
    all_known_rank = all_known_rank && in(g, n, i).shape.rank_known;
  if (all_known_rank) {
    int64_t axis = normalize_axis(n, n.attr_int("axis", 0), s.dims.size());
    for (size_t i = 1; i < n.inputs.size(); ++i) {
      const SymShape& o = in(g, n, i).shape;
      if (o.dims.size() != s.dims.size()) fail(n, "inputs have different ranks");
      s.dims[axis] = add_dims(s.dims[axis], o.dims[axis]);
    }
  } else {
    s = SymShape{};
  }
  set(g, n, 0, x0.dtype, s);
  std::vector<Dim> sv;
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    auto part = symbolic_ints(&in(g, n, i));
    if (!part) return;
    sv.insert(sv.end(), part->begin(), part->end());
  }
  out(g, n, 0).sym_value = sv;
}

void infer_split(Graph& g, const Node& n) {
  const Value& x = in(g, n, 0);
  size_t outs = n.outputs.size();
  std::optional<std::vector<int64_t>> sizes;
  if (g.input(n, 1))
    sizes = constant_ints(g.input(n, 1));
  else if (n.has_attr("split"))
    sizes = n.attr_ints("split");
  for (size_t i = 0; i < outs; ++i) {
    if (!x.shape.rank_known) {
      set(g, n, i, x.dtype, SymShape{});
      continue;
    }
    int64_t axis = normalize_axis(n, n.attr_int("axis", 0), x.shape.dims.size());
    SymShape s = x.shape;
    const Dim& d = x.shape.dims[axis];
    if (sizes && sizes->size() == outs) {
      s.dims[axis] = Dim::known((*sizes)[i]);
    } else if (d.is_known()) {
      int64_t chunk = (d.value + static_cast<int64_t>(outs) - 1) / static_cast<int64_t>(outs);
      int64_t start = chunk * static_cast<int64_t>(i);
      s.dims[axis] = Dim::known(std::max<int64_t>(0, std::min(chunk, d.value - start)));
    } else {
      s.dims[axis] = Dim::unknown();
    }
    set(g, n, i, x.dtype, s);
  }
}

void infer_slice(Graph& g, const Node& n) {
  const Value& x = in(g, n, 0);
  auto starts = constant_ints(g.input(n, 1));
  auto ends = constant_ints(g.input(n, 2));
  std::optional<std::vector<int64_t>> axes, steps;
  if (g.input(n, 3)) axes = constant_ints(g.input(n, 3));
  if (g.input(n, 4)) steps = constant_ints(g.input(n, 4));
  bool params_known = starts && ends && (!g.input(n, 3) || axes) && (!g.input(n, 4) || steps);
  if (!x.shape.rank_known) {
    set(g, n, 0, x.dtype, SymShape{});
    return;
  }
  SymShape s = x.shape;
  if (!params_known) {
    if (axes) {
      for (int64_t a : *axes) s.dims[normalize_axis(n, a, s.dims.size())] = Dim::unknown();
    } else {
      s = SymShape::of(std::vector<Dim>(s.dims.size(), Dim::unknown()));
    }
    set(g, n, 0, x.dtype, s);
    return;
  }
  if (starts->size() != ends->size()) fail(n, "starts and ends have different lengths");
  std::vector<int64_t> ax = axes ? *axes : std::vector<int64_t>();
  if (!axes)
    for (size_t i = 0; i < starts->size(); ++i) ax.push_back(static_cast<int64_t>(i));
  std::vector<int64_t> st = steps ? *steps : std::vector<int64_t>(starts->size(), 1);
  for (size_t i = 0; i < ax.size(); ++i) {
    int64_t a = normalize_axis(n, ax[i], s.dims.size());
    if (st[i] == 0) fail(n, "slice step is 0");
    const Dim& d = x.shape.dims[a];
    int64_t b = (*starts)[i], e = (*ends)[i];
    if (d.is_known()) {
      int64_t bb = clamp_slice_index(b, d.value, false, st[i]);
      int64_t ee = clamp_slice_index(e, d.value, true, st[i]);
      s.dims[a] = Dim::known(slice_length(bb, ee, st[i]));
    } else if (b == 0 && st[i] == 1 && e >= std::numeric_limits<int32_t>::max()) {
      s.dims[a] = d;
    } else if (b >= 0 && e >= 0 && st[i] == 1 && e < std::numeric_limits<int32_t>::max() &&
               e >= b) {
      s.dims[a] = Dim::sym("min(" + d.str() + "," + std::to_string(e) + ")-" + std::to_string(b));
    } else {
      s.dims[a] = Dim::unknown();
    }
  }
  set(g, n, 0, x.dtype, s);
  auto sv = symbolic_ints(&x);
  if (sv && ax.size() == 1 && st[0] == 1) {
    int64_t len = static_cast<int64_t>(sv->size());
    int64_t b = clamp_slice_index((*starts)[0], len, false, 1);
    int64_t e = clamp_slice_index((*ends)[0], len, true, 1);
    std::vector<Dim> r;
    for (int64_t i = b; i < e; ++i) r.push_back((*sv)[i]);
    out(g, n, 0).sym_value = r;
  }
}

void infer_gather(Graph& g, const Node& n) {
  const Value& data = in(g, n, 0);
  const Value& idx = in(g, n, 1);
  if (idx.dtype != DType::kInt64 && idx.dtype != DType::kInt32 && idx.dtype != DType::kUndefined) {
    fail(n, std::string("indices must be int64 or int32, found ") + dtype_name(idx.dtype));
  }
  if (!data.shape.rank_known || !idx.shape.rank_known) {
    set(g, n, 0, data.dtype, SymShape{});
    return;
  }
  int64_t axis = normalize_axis(n, n.attr_int("axis", 0), data.shape.dims.size());
  std::vector<Dim> dims(data.shape.dims.begin(), data.shape.dims.begin() + axis);
  dims.insert(dims.end(), idx.shape.dims.begin(), idx.shape.dims.end());
  dims.insert(dims.end(), data.shape.dims.begin() + axis + 1, data.shape.dims.end());
  set(g, n, 0, data.dtype, SymShape::of(dims));
  auto sv = symbolic_ints(&data);
  auto ci = constant_ints(&idx);
  if (sv && ci && data.shape.dims.size() == 1) {
    std::vector<Dim> r;
    for (int64_t i : *ci) {
      int64_t k = i < 0 ? i + static_cast<int64_t>(sv->size()) : i;
      if (k < 0 || k >= static_cast<int64_t>(sv->size()))
        fail(n, "index " + std::to_string(i) + " out of range");
      r.push_back((*sv)[k]);
    }
    out(g, n, 0).sym_value = r;
  }
}

void infer_gather_nd(Graph& g, const Node& n) {
  const Value& data = in(g, n, 0);
  const Value& idx = in(g, n, 1);
  int64_t b = n.attr_int("batch_dims", 0);
  if (!data.shape.rank_known || !idx.shape.rank_known || idx.shape.dims.empty() ||
      !idx.shape.dims.back().is_known()) {
    set(g, n, 0, data.dtype, SymShape{});
    return;
  }
  int64_t k = idx.shape.dims.back().value;
  if (b + k > static_cast<int64_t>(data.shape.dims.size()))
    fail(n, "index depth exceeds the data rank");
  std::vector<Dim> dims(idx.shape.dims.begin(), idx.shape.dims.end() - 1);
  dims.insert(dims.end(), data.shape.dims.begin() + b + k, data.shape.dims.end());
  set(g, n, 0, data.dtype, SymShape::of(dims));
}

void infer_transpose(Graph& g, const Node& n) {
  const Value& x = in(g, n, 0);
  if (!x.shape.rank_known) {
    set(g, n, 0, x.dtype, SymShape{});
    return;
  }
  std::vector<int64_t> perm = n.attr_ints("perm");
  size_t r = x.shape.dims.size();
  if (perm.empty())
    for (size_t i = 0; i < r; ++i) perm.push_back(static_cast<int64_t>(r - 1 - i));
  if (perm.size() != r)
    fail(n, "perm has " + std::to_string(perm.size()) + " entries for rank " + std::to_string(r));
  std::vector<Dim> dims;
  std::set<int64_t> seen;
  for (int64_t p : perm) {
    int64_t a = normalize_axis(n, p, r);
    if (!seen.insert(a).second) fail(n, "perm repeats an axis");
    dims.push_back(x.shape.dims[a]);
  }
  set(g, n, 0, x.dtype, SymShape::of(dims));
}

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

void infer_range(Graph& g, const Node& n) {
  const Value& start = in(g, n, 0);
  auto s = symbolic_ints(&start);
  auto l = symbolic_ints(&in(g, n, 1));
  auto d = symbolic_ints(&in(g, n, 2));
  Dim len = Dim::unknown();
  if (s && l && d && s->size() == 1 && l->size() == 1 && d->size() == 1) {
    const Dim &a = (*s)[0], &b = (*l)[0], &c = (*d)[0];
    if (a.is_known() && b.is_known() && c.is_known() && c.value != 0) {
      len = Dim::known(
          std::max<int64_t>(0, (b.value - a.value + c.value + (c.value > 0 ? -1 : 1)) / c.value));
    } else if (c.is_known() && c.value == 1) {
      len = sub_dims(b, a);
    }
  }
  set(g, n, 0, start.dtype, SymShape::of({len}));
}

void infer_constant(Graph& g, const Node& n) {
  Tensor t = constant_value(n);
  Value& v = out(g, n, 0);
  v.dtype = t.dtype();
  v.shape = SymShape::from(t.shape());
  v.constant = t;
  v.sym_value.reset();
}

void infer_constant_of_shape(Graph& g, const Node& n) {
  auto dims = shape_operand(g, n, 0);
  DType dt = n.has_attr("value") ? n.attrs.at("value").t.dtype() : DType::kFloat32;
  set(g, n, 0, dt, dims ? SymShape::of(*dims) : unknown_rank_shape(g, n, 0));
}

void infer_expand(Graph& g, const Node& n) {
  const Value& x = in(g, n, 0);
  auto dims = shape_operand(g, n, 1);
  if (!dims) {
    set(g, n, 0, x.dtype, SymShape{});
    return;
  }
  // Expand treats a 1 in the target as "keep the input's size", which broadcasting does too.
  set(g, n, 0, x.dtype, broadcast(n, x.shape, SymShape::of(*dims)));
}

void infer_tile(Graph& g, const Node& n) {
  const Value& x = in(g, n, 0);
  auto reps = symbolic_ints(g.input(n, 1));
  if (!x.shape.rank_known || !reps || reps->size() != x.shape.dims.size()) {
    set(g, n, 0, x.dtype,
        x.shape.rank_known ? SymShape::of(std::vector<Dim>(x.shape.dims.size(), Dim::unknown()))
                           : SymShape{});
    return;
  }
  std::vector<Dim> dims;
  for (size_t i = 0; i < reps->size(); ++i) dims.push_back(mul_dims(x.shape.dims[i], (*reps)[i]));
  set(g, n, 0, x.dtype, SymShape::of(dims));
}

void infer_shape_op(Graph& g, const Node& n) {
  const Value& x = in(g, n, 0);
  if (!x.shape.rank_known) {
    set(g, n, 0, DType::kInt64, SymShape::of({Dim::unknown()}));
    return;
  }
  int64_t r = static_cast<int64_t>(x.shape.dims.size());
  int64_t start = n.attr_int("start", 0), end = n.attr_int("end", r);
  if (start < 0) start += r;
  if (end < 0) end += r;
  start = std::clamp<int64_t>(start, 0, r);
  end = std::clamp<int64_t>(end, start, r);
  set(g, n, 0, DType::kInt64, SymShape::of({Dim::known(end - start)}));
  out(g, n, 0).sym_value =
      std::vector<Dim>(x.shape.dims.begin() + start, x.shape.dims.begin() + end);
}

void infer_size(Graph& g, const Node& n) {
  const Value& x = in(g, n, 0);
  set(g, n, 0, DType::kInt64, SymShape::of({}));
  if (x.shape.rank_known) {
    Dim p = Dim::known(1);
    for (const Dim& d : x.shape.dims) p = mul_dims(p, d);
    out(g, n, 0).sym_value = std::vector<Dim>{p};
  }
}

void infer_flatten(Graph& g, const Node& n) {
  const Value& x = in(g, n, 0);
  if (!x.shape.rank_known) {
    set(g, n, 0, x.dtype, SymShape::of({Dim::unknown(), Dim::unknown()}));
    return;
  }
  size_t r = x.shape.dims.size();
  int64_t axis = n.attr_int("axis", 1);
  if (axis < 0) axis += static_cast<int64_t>(r);
  if (axis < 0 || axis > static_cast<int64_t>(r)) fail(n, "axis out of range");
  Dim a = Dim::known(1), b = Dim::known(1);
  for (size_t i = 0; i < r; ++i)
    (static_cast<int64_t>(i) < axis ? a : b) =
        mul_dims(static_cast<int64_t>(i) < axis ? a : b, x.shape.dims[i]);
  set(g, n, 0, x.dtype, SymShape::of({a, b}));
}

void infer_cast(Graph& g, const Node& n, DType to) {
  const Value& x = in(g, n, 0);
  if (!dtype_is_known(static_cast<int32_t>(to))) {
    throw Error(ErrorCode::kUnsupported, n.describe() + ": cast to data type " +
                                             std::to_string(static_cast<int>(to)) +
                                             " is not supported");
  }
  set(g, n, 0, to, x.shape);
  if (to == DType::kInt64 || to == DType::kInt32) {
    if (auto sv = symbolic_ints(&x)) out(g, n, 0).sym_value = sv;
  }
}

void infer_where(Graph& g, const Node& n) {
  SymShape s = broadcast(n, broadcast(n, in(g, n, 0).shape, in(g, n, 1).shape), in(g, n, 2).shape);
  if (in(g, n, 0).dtype != DType::kBool)
    fail(n, std::string("condition must be bool, found ") + dtype_name(in(g, n, 0).dtype));
  set(g, n, 0, in(g, n, 1).dtype, s);
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

void infer_dropout(Graph& g, const Node& n) {
  infer_unary(g, n);
  if (auto sv = symbolic_ints(&in(g, n, 0))) out(g, n, 0).sym_value = sv;
  if (has_output(n, 1)) set(g, n, 1, DType::kBool, in(g, n, 0).shape);
}

const std::unordered_map<std::string, OpEntry>& registry() {
  auto binary = [](bool to_bool) {
    return [to_bool](Graph& g, const Node& n) { infer_binary(g, n, to_bool); };
  };
  auto arith = [](std::function<Dim(const Dim&, const Dim&)> f) {
    return [f](Graph& g, const Node& n) {
      infer_binary(g, n, false);
      elementwise_sym(g, n, f);
    };
  };
  auto unary = [](Graph& g, const Node& n) { infer_unary(g, n); };
  auto float_unary = [](Graph& g, const Node& n) {
    require_float(n, in(g, n, 0));
    infer_unary(g, n);
  };
  auto to_bool = [](Graph& g, const Node& n) {
    infer_unary(g, n);
    out(g, n, 0).dtype = DType::kBool;
  };
  static const std::unordered_map<std::string, OpEntry> table = {
      {"Add", {13, arith(add_dims)}},
      {"Sub", {13, arith(sub_dims)}},
      {"Mul", {13, arith(mul_dims)}},
      {"Div", {13, arith(div_dims)}},
      {"Pow", {13, binary(false)}},
      {"Mod", {13, binary(false)}},
      {"Max", {13, binary(false)}},
      {"Min", {13, binary(false)}},
      {"Sum", {13, binary(false)}},
      {"And", {13, binary(true)}},
      {"Or", {13, binary(true)}},
      {"Xor", {13, binary(true)}},
      {"Equal", {13, binary(true)}},
      {"Less", {13, binary(true)}},
      {"LessOrEqual", {13, binary(true)}},
      {"Greater", {13, binary(true)}},
      {"GreaterOrEqual", {13, binary(true)}},
      {"Neg",
       {13,
        [](Graph& g, const Node& n) {
          infer_unary(g, n);
          if (auto sv = symbolic_ints(&in(g, n, 0))) {
            bool known =
                std::all_of(sv->begin(), sv->end(), [](const Dim& d) { return d.is_known(); });
            if (known) {
              for (Dim& d : *sv) d.value = -d.value;
              out(g, n, 0).sym_value = sv;
            }
          }
        }}},
      {"Abs", {13, unary}},
      {"Sqrt", {13, float_unary}},
      {"Exp", {13, float_unary}},
      {"Log", {13, float_unary}},
      {"Tanh", {13, float_unary}},
      {"Erf", {13, float_unary}},
      {"Sigmoid", {13, float_unary}},
      {"Relu", {13, unary}},
      {"Reciprocal", {13, float_unary}},
      {"Floor", {13, float_unary}},
      {"Ceil", {13, float_unary}},
      {"Sin", {13, float_unary}},
      {"Cos", {13, float_unary}},
      {"Gelu", {20, float_unary}},
      {"Softmax", {13, float_unary}},
      {"LogSoftmax", {13, float_unary}},
      {"Not", {13, to_bool}},
      {"IsNaN", {13, to_bool}},
      {"IsInf", {13, to_bool}},
      {"Identity",
       {13,
        [](Graph& g, const Node& n) {
          infer_unary(g, n);
          if (auto sv = symbolic_ints(&in(g, n, 0))) out(g, n, 0).sym_value = sv;
        }}},
      {"Dropout", {13, infer_dropout}},
      {"Clip", {13, unary}},
      {"Where", {13, infer_where}},
      {"Cast",
       {13, [](Graph& g,
               const Node& n) { infer_cast(g, n, static_cast<DType>(n.attr_int("to", 0))); }}},
      {"CastLike", {15, [](Graph& g, const Node& n) { infer_cast(g, n, in(g, n, 1).dtype); }}},
      {"Shape", {13, infer_shape_op}},
      {"Size", {13, infer_size}},
      {"Reshape", {13, infer_reshape}},
      {"Flatten", {13, infer_flatten}},
      {"Squeeze", {13, infer_squeeze}},
      {"Unsqueeze", {13, infer_unsqueeze}},
      {"Transpose", {13, infer_transpose}},
      {"Concat", {13, infer_concat}},
      {"Split", {13, infer_split}},
      {"Slice", {13, infer_slice}},
      {"Gather", {13, infer_gather}},
      {"GatherND", {13, infer_gather_nd}},
      {"GatherElements",
       {13, [](Graph& g, const Node& n) { set(g, n, 0, in(g, n, 0).dtype, in(g, n, 1).shape); }}},
      {"Expand", {13, infer_expand}},
      {"Tile", {13, infer_tile}},
      {"Range", {13, infer_range}},
      {"Constant", {13, infer_constant}},
      {"ConstantOfShape", {13, infer_constant_of_shape}},
      {"Trilu", {14, unary}},
      {"CumSum", {13, unary}},
      {"MatMul", {13, infer_matmul}},
      {"Gemm", {13, infer_gemm}},
      {"LayerNormalization", {17, infer_layer_norm}},
      {"ReduceMean", {13, [](Graph& g, const Node& n) { infer_reduce(g, n, g.opset >= 18); }}},
      {"ReduceMax", {13, [](Graph& g, const Node& n) { infer_reduce(g, n, g.opset >= 18); }}},
      {"ReduceMin", {13, [](Graph& g, const Node& n) { infer_reduce(g, n, g.opset >= 18); }}},
      {"ReduceSum", {13, [](Graph& g, const Node& n) { infer_reduce(g, n, true); }}},
      {"ArgMax",
       {13,
        [](Graph& g, const Node& n) {
          Node copy = n;
          copy.attrs["axes"].ints = {n.attr_int("axis", 0)};
          infer_reduce(g, copy, false);
        }}},
  };
  return table;
}

}  // namespace

Tensor constant_value(const Node& n) {
  auto one = [](DType dt, const void* p, size_t bytes, Shape shape) {
    Tensor t(dt, std::move(shape));
    std::memcpy(t.raw_mut(), p, bytes);
    return t;
  };
  if (n.has_attr("value")) return n.attrs.at("value").t;
  if (n.has_attr("value_float")) {
    float f = n.attrs.at("value_float").f;
    return one(DType::kFloat32, &f, 4, {});
  }
  if (n.has_attr("value_int")) {
    int64_t i = n.attrs.at("value_int").i;
    return one(DType::kInt64, &i, 8, {});
  }
  if (n.has_attr("value_floats")) {
    const auto& v = n.attrs.at("value_floats").floats;
    return one(DType::kFloat32, v.data(), v.size() * 4, {static_cast<int64_t>(v.size())});
  }
  if (n.has_attr("value_ints")) {
    const auto& v = n.attrs.at("value_ints").ints;
    return one(DType::kInt64, v.data(), v.size() * 8, {static_cast<int64_t>(v.size())});
  }
  throw Error(ErrorCode::kUnsupported,
              n.describe() +
                  ": Constant has no value, value_float(s) or value_int(s) attribute (sparse and "
                  "string constants are not supported)");
}

std::optional<std::vector<int64_t>> constant_ints(const Value* v) {
  if (!v || !v->is_constant()) return std::nullopt;
  const Tensor& t = v->constant;
  if (t.numel() > 4096) return std::nullopt;
  std::vector<int64_t> r(static_cast<size_t>(t.numel()));
  if (t.dtype() == DType::kInt64) {
    for (size_t i = 0; i < r.size(); ++i) r[i] = t.data<int64_t>()[i];
  } else if (t.dtype() == DType::kInt32) {
    for (size_t i = 0; i < r.size(); ++i) r[i] = t.data<int32_t>()[i];
  } else {
    return std::nullopt;
  }
  return r;
}

std::optional<std::vector<Dim>> symbolic_ints(const Value* v) {
  if (!v) return std::nullopt;
  if (v->is_constant()) {
    if (v->constant.rank() > 1 || v->constant.numel() > 64) return std::nullopt;
    auto ints = constant_ints(v);
    if (!ints) return std::nullopt;
    std::vector<Dim> r;
    for (int64_t i : *ints) r.push_back(Dim::known(i));
    return r;
  }
  return v->sym_value;
}

namespace {

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

const std::unordered_map<std::string, OpEntry>& fused_registry() {
  static const std::unordered_map<std::string, OpEntry> table = {
      {"Embedding", {0, infer_embedding}},
      {"Linear", {0, infer_linear}},
      {"Attention", {0, infer_attention}},
  };
  return table;
}

}  // namespace

bool op_supported(const std::string& op_type, const std::string& domain, int64_t opset,
                  std::string* why) {
  if (!domain.empty() && domain != "ai.onnx") {
    if (why)
      *why = "ops of domain '" + domain + "' are not supported (only the default ONNX domain is)";
    return false;
  }
  auto it = registry().find(op_type);
  if (it == registry().end()) {
    if (why) *why = "gptrt has no kernel for op " + op_type;
    return false;
  }
  if (opset < it->second.since) {
    if (why)
      *why = op_type + " needs opset " + std::to_string(it->second.since) +
             " or newer, the model imports opset " + std::to_string(opset);
    return false;
  }
  return true;
}

std::vector<std::string> supported_ops() {
  std::vector<std::string> names;
  for (const auto& [name, e] : registry()) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

void infer_node(Graph& graph, const Node& node) {
  const auto& table = node.domain == kFusedDomain ? fused_registry() : registry();
  auto it = table.find(node.op_type);
  if (it == table.end()) {
    throw Error(ErrorCode::kUnsupported, node.describe() + ": unsupported op");
  }
  it->second.infer(graph, node);
}

void infer_shapes(Graph& graph) {
  for (const Node& n : graph.nodes) infer_node(graph, n);
}

}  // namespace gptrt::ir

// Shape inference of shape and data-movement ops, with symbolic shape arithmetic.
#include <algorithm>
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
  if (!n.has_attr("axis")) fail(n, "has no 'axis' attribute, which Concat requires");
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
      int64_t chunk =
          d.value / static_cast<int64_t>(outs) + (d.value % static_cast<int64_t>(outs) != 0);
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

void infer_range(Graph& g, const Node& n) {
  const Value& start = in(g, n, 0);
  auto s = symbolic_ints(&start);
  auto l = symbolic_ints(&in(g, n, 1));
  auto d = symbolic_ints(&in(g, n, 2));
  Dim len = Dim::unknown();
  if (s && l && d && s->size() == 1 && l->size() == 1 && d->size() == 1) {
    const Dim &a = (*s)[0], &b = (*l)[0], &c = (*d)[0];
    if (a.is_known() && b.is_known() && c.is_known() && c.value != 0) {
      // ceil((limit - start) / delta), never wrapped: hostile limits leave it unknown.
      int64_t diff;
      if (!platform::sub_overflows(b.value, a.value, &diff) &&
          !(c.value == -1 && diff == std::numeric_limits<int64_t>::min())) {
        int64_t q = diff / c.value;
        if (diff % c.value != 0 && (diff > 0) == (c.value > 0)) ++q;
        len = Dim::known(std::max<int64_t>(0, q));
      }
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

}  // namespace gptrt::ir::infer

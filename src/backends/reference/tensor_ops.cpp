// Data movement and shape ops: Shape, Reshape, Transpose, Concat, Split, Slice, Gather,
// GatherND, GatherElements, Expand, Tile, Range, Constant(OfShape), Trilu, CumSum, ...
#include <cmath>
#include <cstring>
#include <set>

#include "backends/reference/kernels.h"
#include "core/checked.h"
#include "ir/op_math.h"
#include "ir/shape_inference.h"
#include "platform/compiler.h"

namespace gptrt::reference {
namespace {

Tensor int64_tensor(const std::vector<int64_t>& v, Shape shape) {
  Tensor t(DType::kInt64, std::move(shape));
  if (!v.empty()) std::memcpy(t.raw_mut(), v.data(), v.size() * 8);
  return t;
}

std::vector<Tensor> shape_kernel(const KernelCall& c) {
  const Shape& s = c.in(0).shape();
  int64_t r = static_cast<int64_t>(s.size());
  int64_t start = c.node.attr_int("start", 0), end = c.node.attr_int("end", r);
  if (start < 0) start += r;
  if (end < 0) end += r;
  start = std::clamp<int64_t>(start, 0, r);
  end = std::clamp<int64_t>(end, start, r);
  std::vector<int64_t> dims(s.begin() + start, s.begin() + end);
  return {int64_tensor(dims, {static_cast<int64_t>(dims.size())})};
}

std::vector<Tensor> size_kernel(const KernelCall& c) {
  return {int64_tensor({c.in(0).numel()}, {})};
}

std::vector<Tensor> reshape(const KernelCall& c) {
  const Tensor& x = c.in(0);
  std::vector<int64_t> target = c.ints(1);
  bool allowzero = c.node.attr_int("allowzero", 0) != 0;
  int64_t known = 1;
  int infer_at = -1;
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i] == 0 && !allowzero) {
      if (i >= x.rank())
        c.fail("shape entry 0 at position " + std::to_string(i) +
               " has no input dimension to copy");
      target[i] = x.dim(i);
    }
    if (target[i] == -1) {
      if (infer_at >= 0) c.fail("more than one -1 in the target shape");
      infer_at = static_cast<int>(i);
    } else if (target[i] < 0) {
      c.fail("negative dimension " + std::to_string(target[i]) + " in the target shape");
    } else {
      known *= target[i];
    }
  }
  if (infer_at >= 0) {
    if (known == 0 || x.numel() % known != 0)
      c.fail("cannot reshape " + shape_str(x.shape()) + " to " + shape_str(target));
    target[infer_at] = x.numel() / known;
  }
  if (shape_numel(target) != x.numel())
    c.fail("cannot reshape " + shape_str(x.shape()) + " to " + shape_str(target));
  return {x.reshaped(target)};
}

std::vector<Tensor> flatten(const KernelCall& c) {
  const Tensor& x = c.in(0);
  int64_t r = static_cast<int64_t>(x.rank());
  int64_t axis = c.node.attr_int("axis", 1);
  if (axis < 0) axis += r;
  if (axis < 0 || axis > r) c.fail("axis out of range");
  int64_t a = 1;
  for (int64_t i = 0; i < axis; ++i) a *= x.dim(static_cast<size_t>(i));
  return {x.reshaped({a, a == 0 ? 0 : x.numel() / std::max<int64_t>(a, 1)})};
}

std::vector<int64_t> axes_arg(const KernelCall& c) {
  return c.opset >= 13 ? c.ints(1) : c.node.attr_ints("axes");
}

std::vector<Tensor> squeeze(const KernelCall& c) {
  const Tensor& x = c.in(0);
  std::vector<int64_t> axes = axes_arg(c);
  std::set<int64_t> drop;
  for (int64_t a : axes) drop.insert(normalize_axis(c, a, x.rank()));
  Shape s;
  for (size_t i = 0; i < x.rank(); ++i) {
    bool sq = axes.empty() ? x.dim(i) == 1 : drop.count(static_cast<int64_t>(i)) > 0;
    if (sq && x.dim(i) != 1)
      c.fail("cannot squeeze dimension " + std::to_string(i) + " of size " +
             std::to_string(x.dim(i)));
    if (!sq) s.push_back(x.dim(i));
  }
  return {x.reshaped(s)};
}

std::vector<Tensor> unsqueeze(const KernelCall& c) {
  const Tensor& x = c.in(0);
  std::vector<int64_t> axes = axes_arg(c);
  size_t r = x.rank() + axes.size();
  std::set<int64_t> ins;
  for (int64_t a : axes) ins.insert(normalize_axis(c, a, r));
  if (ins.size() != axes.size()) c.fail("repeated axis");
  Shape s;
  size_t k = 0;
  for (size_t i = 0; i < r; ++i) s.push_back(ins.count(static_cast<int64_t>(i)) ? 1 : x.dim(k++));
  return {x.reshaped(s)};
}

// Copies `x` viewed through per-output-dim input strides (general strided gather).
Tensor strided_copy(const Tensor& x, const Shape& out_shape, const std::vector<int64_t>& in_strides,
                    int64_t base) {
  Tensor out(x.dtype(), out_shape);
  size_t es = dtype_size(x.dtype());
  const auto* src = static_cast<const uint8_t*>(x.raw());
  auto* dst = static_cast<uint8_t*>(out.raw_mut());
  if (!out_shape.empty() && in_strides.back() == 1) {
    // The innermost dimension is contiguous in the input: copy whole rows.
    int64_t row = out_shape.back();
    Shape outer(out_shape.begin(), out_shape.end() - 1);
    std::vector<int64_t> outer_strides(in_strides.begin(), in_strides.end() - 1);
    Broadcast b{outer, {outer_strides}};
    for_each_broadcast(b, [&](int64_t i, const int64_t* off) {
      std::memcpy(dst + i * row * static_cast<int64_t>(es),
                  src + (base + off[0]) * static_cast<int64_t>(es), static_cast<size_t>(row) * es);
    });
    return out;
  }
  Broadcast b{out_shape, {in_strides}};
  for_each_broadcast(b, [&](int64_t i, const int64_t* off) {
    std::memcpy(dst + i * es, src + (base + off[0]) * es, es);
  });
  return out;
}

std::vector<Tensor> transpose(const KernelCall& c) {
  const Tensor& x = c.in(0);
  std::vector<int64_t> perm = c.node.attr_ints("perm");
  if (perm.empty())
    for (size_t i = 0; i < x.rank(); ++i) perm.push_back(static_cast<int64_t>(x.rank() - 1 - i));
  if (perm.size() != x.rank()) c.fail("perm does not match the input rank");
  std::vector<int64_t> st = strides_of(x.shape());
  Shape s;
  std::vector<int64_t> in_st;
  for (int64_t p : perm) {
    int64_t a = normalize_axis(c, p, x.rank());
    s.push_back(x.dim(static_cast<size_t>(a)));
    in_st.push_back(st[static_cast<size_t>(a)]);
  }
  return {strided_copy(x, s, in_st, 0)};
}

std::vector<Tensor> concat(const KernelCall& c) {
  const Tensor& x0 = c.in(0);
  int64_t axis = normalize_axis(c, c.node.attr_int("axis", 0), x0.rank());
  Shape s = x0.shape();
  s[axis] = 0;
  for (size_t k = 0; k < c.inputs.size(); ++k) {
    const Tensor& x = c.in(k);
    if (x.rank() != x0.rank() || x.dtype() != x0.dtype()) c.fail("inputs differ in rank or dtype");
    for (size_t d = 0; d < x.rank(); ++d) {
      if (static_cast<int64_t>(d) != axis && x.dim(d) != x0.dim(d))
        c.fail("inputs differ outside the concat axis: " + shape_str(x0.shape()) + " vs " +
               shape_str(x.shape()));
    }
    s[axis] += x.dim(static_cast<size_t>(axis));
  }
  Tensor out(x0.dtype(), s);
  size_t es = dtype_size(x0.dtype());
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= s[d];
  for (size_t d = static_cast<size_t>(axis) + 1; d < s.size(); ++d) inner *= s[d];
  auto* dst = static_cast<uint8_t*>(out.raw_mut());
  int64_t offset = 0;
  for (size_t k = 0; k < c.inputs.size(); ++k) {
    const Tensor& x = c.in(k);
    int64_t chunk = x.dim(static_cast<size_t>(axis)) * inner;
    for (int64_t o = 0; o < outer; ++o) {
      std::memcpy(dst + (o * s[axis] * inner + offset) * es,
                  static_cast<const uint8_t*>(x.raw()) + o * chunk * es, chunk * es);
    }
    offset += chunk;
  }
  return {out};
}

Tensor slice_axis(const Tensor& x, size_t axis, int64_t start, int64_t len) {
  std::vector<int64_t> st = strides_of(x.shape());
  Shape s = x.shape();
  s[axis] = len;
  return strided_copy(x, s, st, start * st[axis]);
}

std::vector<Tensor> split(const KernelCall& c) {
  const Tensor& x = c.in(0);
  size_t axis = static_cast<size_t>(normalize_axis(c, c.node.attr_int("axis", 0), x.rank()));
  size_t n = c.node.outputs.size();
  std::vector<int64_t> sizes = c.optional(1) ? c.ints(1) : c.node.attr_ints("split");
  if (sizes.empty()) {
    int64_t chunk = (x.dim(axis) + static_cast<int64_t>(n) - 1) / static_cast<int64_t>(n);
    for (size_t i = 0; i < n; ++i)
      sizes.push_back(
          std::max<int64_t>(0, std::min(chunk, x.dim(axis) - chunk * static_cast<int64_t>(i))));
  }
  int64_t total = 0;
  bool valid = sizes.size() == n;
  for (int64_t v : sizes) valid = valid && v >= 0 && !platform::add_overflows(total, v, &total);
  if (!valid || total != x.dim(axis))
    c.fail("split sizes do not add up to dimension " + std::to_string(x.dim(axis)));
  std::vector<Tensor> outs;
  int64_t start = 0;
  for (int64_t len : sizes) {
    outs.push_back(slice_axis(x, axis, start, len));
    start += len;
  }
  return outs;
}

std::vector<Tensor> slice(const KernelCall& c) {
  const Tensor& x = c.in(0);
  std::vector<int64_t> starts = c.ints(1), ends = c.ints(2);
  std::vector<int64_t> axes = c.ints(3), steps = c.ints(4);
  if (axes.empty())
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
    c.fail("starts, ends, axes and steps differ in length");
  std::vector<int64_t> st = strides_of(x.shape());
  std::vector<int64_t> in_st = st;
  Shape s = x.shape();
  int64_t base = 0;
  for (size_t i = 0; i < axes.size(); ++i) {
    size_t a = static_cast<size_t>(normalize_axis(c, axes[i], x.rank()));
    if (steps[i] == 0) c.fail("slice step is 0");
    const int64_t step = ir::bounded_slice_step(steps[i], x.dim(a));
    int64_t b = ir::clamp_slice_index(starts[i], x.dim(a), false, step);
    int64_t e = ir::clamp_slice_index(ends[i], x.dim(a), true, step);
    s[a] = ir::slice_length(b, e, step);
    base += b * st[a];
    in_st[a] = st[a] * step;
  }
  if (shape_numel(s) == 0) return {Tensor(x.dtype(), s)};
  return {strided_copy(x, s, in_st, base)};
}

std::vector<Tensor> gather(const KernelCall& c) {
  const Tensor& data = c.in(0);
  const Tensor& idx = c.in(1);
  size_t axis = static_cast<size_t>(normalize_axis(c, c.node.attr_int("axis", 0), data.rank()));
  std::vector<int64_t> ids = c.ints(1);
  int64_t n_axis = data.dim(axis);
  Shape s(data.shape().begin(), data.shape().begin() + static_cast<int64_t>(axis));
  s.insert(s.end(), idx.shape().begin(), idx.shape().end());
  s.insert(s.end(), data.shape().begin() + static_cast<int64_t>(axis) + 1, data.shape().end());
  Tensor out(data.dtype(), s);
  int64_t outer = 1, inner = 1;
  for (size_t d = 0; d < axis; ++d) outer *= data.dim(d);
  for (size_t d = axis + 1; d < data.rank(); ++d) inner *= data.dim(d);
  size_t es = dtype_size(data.dtype());
  const auto* src = static_cast<const uint8_t*>(data.raw());
  auto* dst = static_cast<uint8_t*>(out.raw_mut());
  int64_t m = static_cast<int64_t>(ids.size());
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t j = 0; j < m; ++j) {
      int64_t k = ids[j] < 0 ? ids[j] + n_axis : ids[j];
      if (k < 0 || k >= n_axis)
        c.fail("index " + std::to_string(ids[j]) + " is out of range [" + std::to_string(-n_axis) +
               ", " + std::to_string(n_axis) + ")");
      std::memcpy(dst + (o * m + j) * inner * es, src + (o * n_axis + k) * inner * es, inner * es);
    }
  }
  return {out};
}

std::vector<Tensor> gather_nd(const KernelCall& c) {
  const Tensor& data = c.in(0);
  const Tensor& idx = c.in(1);
  size_t b = static_cast<size_t>(c.node.attr_int("batch_dims", 0));
  if (idx.rank() < 1) c.fail("indices must have rank >= 1");
  size_t k = static_cast<size_t>(idx.shape().back());
  if (b + k > data.rank() || b >= idx.rank()) {
    if (b + k > data.rank()) c.fail("index depth exceeds the data rank");
  }
  std::vector<int64_t> ids = c.ints(1);
  Shape s(idx.shape().begin(), idx.shape().end() - 1);
  s.insert(s.end(), data.shape().begin() + static_cast<int64_t>(b + k), data.shape().end());
  Tensor out(data.dtype(), s);
  int64_t batch = 1, slice = 1;
  for (size_t d = 0; d < b; ++d) batch *= data.dim(d);
  for (size_t d = b + k; d < data.rank(); ++d) slice *= data.dim(d);
  int64_t per_batch_idx =
      (idx.numel() / std::max<int64_t>(1, static_cast<int64_t>(k))) / std::max<int64_t>(1, batch);
  std::vector<int64_t> dst_st = strides_of(data.shape());
  int64_t batch_stride = b ? dst_st[b - 1] : 0;
  size_t es = dtype_size(data.dtype());
  const auto* src = static_cast<const uint8_t*>(data.raw());
  auto* dst = static_cast<uint8_t*>(out.raw_mut());
  int64_t out_i = 0;
  for (int64_t bi = 0; bi < batch; ++bi) {
    for (int64_t j = 0; j < per_batch_idx; ++j) {
      int64_t off = bi * batch_stride;
      for (size_t q = 0; q < k; ++q) {
        int64_t v =
            ids[static_cast<size_t>((bi * per_batch_idx + j) * static_cast<int64_t>(k)) + q];
        int64_t dim = data.dim(b + q);
        if (v < 0) v += dim;
        if (v < 0 || v >= dim) c.fail("index out of range for dimension " + std::to_string(b + q));
        off += v * dst_st[b + q];
      }
      std::memcpy(dst + out_i * slice * es, src + off * es, slice * es);
      ++out_i;
    }
  }
  return {out};
}

std::vector<Tensor> gather_elements(const KernelCall& c) {
  const Tensor& data = c.in(0);
  const Tensor& idx = c.in(1);
  size_t axis = static_cast<size_t>(normalize_axis(c, c.node.attr_int("axis", 0), data.rank()));
  if (idx.rank() != data.rank()) c.fail("indices and data differ in rank");
  std::vector<int64_t> ids = c.ints(1);
  Tensor out(data.dtype(), idx.shape());
  std::vector<int64_t> ist = strides_of(idx.shape()), dst = strides_of(data.shape());
  size_t es = dtype_size(data.dtype());
  for (int64_t i = 0; i < idx.numel(); ++i) {
    int64_t rem = i, off = 0;
    for (size_t d = 0; d < idx.rank(); ++d) {
      int64_t coord = rem / ist[d];
      rem %= ist[d];
      if (d == axis) {
        coord = ids[static_cast<size_t>(i)];
        if (coord < 0) coord += data.dim(d);
        if (coord < 0 || coord >= data.dim(d)) c.fail("index out of range");
      }
      off += coord * dst[d];
    }
    std::memcpy(static_cast<uint8_t*>(out.raw_mut()) + i * es,
                static_cast<const uint8_t*>(data.raw()) + off * es, es);
  }
  return {out};
}

std::vector<Tensor> expand(const KernelCall& c) {
  const Tensor& x = c.in(0);
  Broadcast b = make_broadcast(c, {x.shape(), c.ints(1)});
  return {strided_copy(x, b.out, b.strides[0], 0)};
}

std::vector<Tensor> tile(const KernelCall& c) {
  const Tensor& x = c.in(0);
  std::vector<int64_t> reps = c.ints(1);
  if (reps.size() != x.rank()) c.fail("repeats must have one entry per input dimension");
  Shape s;
  for (size_t i = 0; i < x.rank(); ++i) {
    if (reps[i] < 0) c.fail("negative repeat");
    s.push_back(checked::mul(x.dim(i), reps[i],
                             c.node.describe() + ": " + shape_str(x.shape()) + " tiled",
                             ErrorCode::kShapeError));
  }
  Tensor out(x.dtype(), s);
  std::vector<int64_t> ost = strides_of(s), ist = strides_of(x.shape());
  size_t es = dtype_size(x.dtype());
  for (int64_t i = 0; i < out.numel(); ++i) {
    int64_t rem = i, off = 0;
    for (size_t d = 0; d < s.size(); ++d) {
      off += ((rem / ost[d]) % x.dim(d)) * ist[d];
      rem %= ost[d];
    }
    std::memcpy(static_cast<uint8_t*>(out.raw_mut()) + i * es,
                static_cast<const uint8_t*>(x.raw()) + off * es, es);
  }
  return {out};
}

std::vector<Tensor> range(const KernelCall& c) {
  const Tensor& start = c.in(0);
  Tensor out;
  dispatch_type(start.dtype(), c, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      c.fail("Range does not take bool");
    } else {
      T a = start.data<T>()[0], l = c.in(1).data<T>()[0], d = c.in(2).data<T>()[0];
      if (d == 0) c.fail("Range delta is 0");
      double n =
          std::ceil((static_cast<double>(l) - static_cast<double>(a)) / static_cast<double>(d));
      // Checked before the cast (a NaN or a count past int64 would be undefined).
      if (!(n <= static_cast<double>(int64_t{1} << 32)))
        c.fail("Range from " + std::to_string(double(a)) + " to " + std::to_string(double(l)) +
               " by " + std::to_string(double(d)) + " has no count up to 2^32 elements");
      int64_t count = n > 0 ? static_cast<int64_t>(n) : 0;
      out = Tensor(start.dtype(), {count});
      if constexpr (std::is_integral_v<T>) {
        // Stepwise: every value lies between start and limit, so none overflows.
        T v = a;
        for (int64_t i = 0; i < count; ++i, v = static_cast<T>(i < count ? v + d : v))
          out.data_mut<T>()[i] = v;
      } else {
        for (int64_t i = 0; i < count; ++i)
          out.data_mut<T>()[i] = static_cast<T>(a + static_cast<T>(i) * d);
      }
    }
  });
  return {out};
}

std::vector<Tensor> constant(const KernelCall& c) {
  return {ir::constant_value(c.node)};
}

std::vector<Tensor> constant_of_shape(const KernelCall& c) {
  std::vector<int64_t> dims = c.ints(0);
  for (int64_t d : dims) {
    if (d < 0) c.fail("negative dimension in shape");
  }
  Tensor fill = c.node.has_attr("value") ? c.node.attrs.at("value").t : Tensor();
  DType dt = fill.empty() ? DType::kFloat32 : fill.dtype();
  Tensor out(dt, dims);
  if (!fill.empty()) {
    size_t es = dtype_size(dt);
    auto* dst = static_cast<uint8_t*>(out.raw_mut());
    for (int64_t i = 0; i < out.numel(); ++i) std::memcpy(dst + i * es, fill.raw(), es);
  }
  return {out};
}

std::vector<Tensor> trilu(const KernelCall& c) {
  const Tensor& x = c.in(0);
  if (x.rank() < 2) c.fail("Trilu needs rank >= 2");
  int64_t k = c.optional(1) ? c.ints(1).at(0) : 0;
  bool upper = c.node.attr_int("upper", 1) != 0;
  Tensor out = x.clone();
  int64_t rows = x.dim(x.rank() - 2), cols = x.dim(x.rank() - 1);
  size_t es = dtype_size(x.dtype());
  auto* p = static_cast<uint8_t*>(out.raw_mut());
  for (int64_t m = 0; m < x.numel() / std::max<int64_t>(1, rows * cols); ++m) {
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < cols; ++j) {
        bool keep = upper ? j - i >= k : j - i <= k;
        if (!keep) std::memset(p + ((m * rows + i) * cols + j) * es, 0, es);
      }
    }
  }
  return {out};
}

std::vector<Tensor> cumsum(const KernelCall& c) {
  const Tensor& x = c.in(0);
  size_t axis = static_cast<size_t>(normalize_axis(c, c.ints(1).at(0), x.rank()));
  bool exclusive = c.node.attr_int("exclusive", 0) != 0,
       reverse = c.node.attr_int("reverse", 0) != 0;
  Tensor out(x.dtype(), x.shape());
  int64_t outer = 1, inner = 1, n = x.dim(axis);
  for (size_t d = 0; d < axis; ++d) outer *= x.dim(d);
  for (size_t d = axis + 1; d < x.rank(); ++d) inner *= x.dim(d);
  dispatch_type(x.dtype(), c, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      c.fail("CumSum does not take bool");
    } else {
      using Acc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;
      for (int64_t o = 0; o < outer; ++o) {
        for (int64_t i = 0; i < inner; ++i) {
          Acc acc = 0;
          for (int64_t s = 0; s < n; ++s) {
            int64_t j = reverse ? n - 1 - s : s;
            int64_t at = (o * n + j) * inner + i;
            T v = x.data<T>()[at];
            if (exclusive) {
              out.data_mut<T>()[at] = static_cast<T>(acc);
              acc += v;
            } else {
              acc += v;
              out.data_mut<T>()[at] = static_cast<T>(acc);
            }
          }
        }
      }
    }
  });
  return {out};
}

}  // namespace

void register_tensor_ops(void (*add)(const char*, KernelFn)) {
  add("Shape", shape_kernel);
  add("Size", size_kernel);
  add("Reshape", reshape);
  add("Flatten", flatten);
  add("Squeeze", squeeze);
  add("Unsqueeze", unsqueeze);
  add("Transpose", transpose);
  add("Concat", concat);
  add("Split", split);
  add("Slice", slice);
  add("Gather", gather);
  add("GatherND", gather_nd);
  add("GatherElements", gather_elements);
  add("Expand", expand);
  add("Tile", tile);
  add("Range", range);
  add("Constant", constant);
  add("ConstantOfShape", constant_of_shape);
  add("Trilu", trilu);
  add("CumSum", cumsum);
}

}  // namespace gptrt::reference

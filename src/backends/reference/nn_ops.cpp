// Neural-network ops: MatMul, Gemm, Softmax, LayerNormalization, reductions. Accumulation is in
// double so the reference is at least as accurate as any backend tested against it.
#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "backends/reference/kernels.h"

namespace gptrt::reference {
namespace {

// c[M,N] = a[M,K] @ b[K,N] with row strides; accumulates in double.
template <typename T>
void matmul_2d(const T* a, const T* b, T* c, int64_t M, int64_t N, int64_t K) {
  std::vector<double> acc(static_cast<size_t>(N));
  for (int64_t i = 0; i < M; ++i) {
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t k = 0; k < K; ++k) {
      double av = static_cast<double>(a[i * K + k]);
      const T* brow = b + k * N;
      for (int64_t j = 0; j < N; ++j)
        acc[static_cast<size_t>(j)] += av * static_cast<double>(brow[j]);
    }
    for (int64_t j = 0; j < N; ++j) c[i * N + j] = static_cast<T>(acc[static_cast<size_t>(j)]);
  }
}

template <typename T>
Tensor transpose_2d(const Tensor& x) {
  Tensor t(x.dtype(), {x.dim(1), x.dim(0)});
  for (int64_t i = 0; i < x.dim(0); ++i)
    for (int64_t j = 0; j < x.dim(1); ++j)
      t.data_mut<T>()[j * x.dim(0) + i] = x.data<T>()[i * x.dim(1) + j];
  return t;
}

std::vector<Tensor> matmul(const KernelCall& c) {
  Tensor a = c.in(0), b = c.in(1);
  if (a.dtype() != b.dtype()) c.fail("inputs have different dtypes");
  if (a.rank() == 0 || b.rank() == 0) c.fail("MatMul inputs must not be scalars");
  bool a1 = a.rank() == 1, b1 = b.rank() == 1;
  if (a1) a = a.reshaped({1, a.dim(0)});
  if (b1) b = b.reshaped({b.dim(0), 1});
  int64_t M = a.dim(a.rank() - 2), K = a.dim(a.rank() - 1), N = b.dim(b.rank() - 1);
  if (b.dim(b.rank() - 2) != K)
    c.fail("inner dimensions differ: " + shape_str(c.in(0).shape()) + " x " +
           shape_str(c.in(1).shape()));
  Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  Broadcast bc = make_broadcast(c, {ba, bb});
  Shape out_shape = bc.out;
  if (!a1) out_shape.push_back(M);
  if (!b1) out_shape.push_back(N);
  Tensor out(a.dtype(), out_shape);
  int64_t batches = shape_numel(bc.out);
  dispatch_type(a.dtype(), c, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_floating_point_v<T>) {
      c.fail("MatMul supports float32 and float64 only");
    } else {
      std::vector<int64_t> offsets_a(static_cast<size_t>(batches)),
          offsets_b(static_cast<size_t>(batches));
      for_each_broadcast(bc, [&](int64_t i, const int64_t* off) {
        offsets_a[static_cast<size_t>(i)] = off[0];
        offsets_b[static_cast<size_t>(i)] = off[1];
      });
      for (int64_t i = 0; i < batches; ++i) {
        matmul_2d<T>(a.data<T>() + offsets_a[static_cast<size_t>(i)] * M * K,
                     b.data<T>() + offsets_b[static_cast<size_t>(i)] * K * N,
                     out.data_mut<T>() + i * M * N, M, N, K);
      }
    }
  });
  return {out};
}

std::vector<Tensor> gemm(const KernelCall& c) {
  Tensor a = c.in(0), b = c.in(1);
  if (a.rank() != 2 || b.rank() != 2) c.fail("Gemm inputs must be 2-D");
  if (a.dtype() != DType::kFloat32 && a.dtype() != DType::kFloat64)
    c.fail("Gemm supports float32 and float64 only");
  bool ta = c.node.attr_int("transA", 0) != 0, tb = c.node.attr_int("transB", 0) != 0;
  double alpha = c.node.attr_float("alpha", 1.0f), beta = c.node.attr_float("beta", 1.0f);
  Tensor out;
  dispatch_type(a.dtype(), c, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_floating_point_v<T>) {
      if (ta) a = transpose_2d<T>(a);
      if (tb) b = transpose_2d<T>(b);
      int64_t M = a.dim(0), K = a.dim(1), N = b.dim(1);
      if (b.dim(0) != K) c.fail("inner dimensions differ");
      out = Tensor(a.dtype(), {M, N});
      std::vector<double> acc(static_cast<size_t>(N));
      const Tensor* bias = c.optional(2);
      Broadcast bc;
      if (bias) bc = make_broadcast(c, {bias->shape(), {M, N}});
      if (bias && bc.out != Shape{M, N}) c.fail("C does not broadcast to [M, N]");
      for (int64_t i = 0; i < M; ++i) {
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t k = 0; k < K; ++k) {
          double av = a.data<T>()[i * K + k];
          for (int64_t j = 0; j < N; ++j)
            acc[static_cast<size_t>(j)] += av * b.data<T>()[k * N + j];
        }
        for (int64_t j = 0; j < N; ++j) {
          double v = alpha * acc[static_cast<size_t>(j)];
          if (bias)
            v += beta *
                 static_cast<double>(bias->data<T>()[i * bc.strides[0][0] + j * bc.strides[0][1]]);
          out.data_mut<T>()[i * N + j] = static_cast<T>(v);
        }
      }
    }
  });
  return {out};
}

template <bool kLog>
std::vector<Tensor> softmax(const KernelCall& c) {
  const Tensor& x = c.in(0);
  size_t axis = static_cast<size_t>(normalize_axis(c, c.node.attr_int("axis", -1), x.rank()));
  int64_t outer = 1, inner = 1, n = x.dim(axis);
  for (size_t d = 0; d < axis; ++d) outer *= x.dim(d);
  for (size_t d = axis + 1; d < x.rank(); ++d) inner *= x.dim(d);
  Tensor out(x.dtype(), x.shape());
  dispatch_type(x.dtype(), c, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_floating_point_v<T>) {
      c.fail("Softmax needs a float input");
    } else {
      for (int64_t o = 0; o < outer; ++o) {
        for (int64_t i = 0; i < inner; ++i) {
          const T* px = x.data<T>() + o * n * inner + i;
          T* po = out.data_mut<T>() + o * n * inner + i;
          double mx = -std::numeric_limits<double>::infinity();
          for (int64_t k = 0; k < n; ++k) mx = std::max(mx, static_cast<double>(px[k * inner]));
          double sum = 0;
          for (int64_t k = 0; k < n; ++k) sum += std::exp(static_cast<double>(px[k * inner]) - mx);
          for (int64_t k = 0; k < n; ++k) {
            double v = static_cast<double>(px[k * inner]) - mx;
            po[k * inner] = static_cast<T>(kLog ? v - std::log(sum) : std::exp(v) / sum);
          }
        }
      }
    }
  });
  return {out};
}

std::vector<Tensor> layer_norm(const KernelCall& c) {
  const Tensor& x = c.in(0);
  const Tensor& scale = c.in(1);
  const Tensor* bias = c.optional(2);
  size_t axis = static_cast<size_t>(normalize_axis(c, c.node.attr_int("axis", -1), x.rank()));
  double eps = c.node.attr_float("epsilon", 1e-5f);
  int64_t rows = 1, cols = 1;
  for (size_t d = 0; d < axis; ++d) rows *= x.dim(d);
  for (size_t d = axis; d < x.rank(); ++d) cols *= x.dim(d);
  if (scale.dtype() != x.dtype() || (bias && bias->dtype() != x.dtype()))
    c.fail(std::string("scale/bias must be ") + dtype_name(x.dtype()) + " like the input");
  if (scale.numel() != cols || (bias && bias->numel() != cols)) {
    c.fail("scale/bias have " + std::to_string(scale.numel()) +
           " elements, the normalized shape has " + std::to_string(cols));
  }
  Shape stat_shape = x.shape();
  for (size_t d = axis; d < stat_shape.size(); ++d) stat_shape[d] = 1;
  Tensor out(x.dtype(), x.shape()), mean_out(DType::kFloat32, stat_shape),
      inv_out(DType::kFloat32, stat_shape);
  dispatch_type(x.dtype(), c, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_floating_point_v<T>) {
      c.fail("LayerNormalization needs a float input");
    } else {
      for (int64_t r = 0; r < rows; ++r) {
        const T* px = x.data<T>() + r * cols;
        double mean = 0, var = 0;
        for (int64_t k = 0; k < cols; ++k) mean += px[k];
        mean /= static_cast<double>(cols);
        for (int64_t k = 0; k < cols; ++k) var += (px[k] - mean) * (px[k] - mean);
        var /= static_cast<double>(cols);
        double inv = 1.0 / std::sqrt(var + eps);
        for (int64_t k = 0; k < cols; ++k) {
          double v = (px[k] - mean) * inv * static_cast<double>(scale.data<T>()[k]);
          if (bias) v += static_cast<double>(bias->data<T>()[k]);
          out.data_mut<T>()[r * cols + k] = static_cast<T>(v);
        }
        mean_out.data_mut<float>()[r] = static_cast<float>(mean);
        inv_out.data_mut<float>()[r] = static_cast<float>(inv);
      }
    }
  });
  return {out, mean_out, inv_out};
}

enum class Reduce { kMean, kSum, kMax, kMin, kArgMax };

template <Reduce kOp>
std::vector<Tensor> reduce_tensor(const KernelCall& c, const Tensor& x);

template <Reduce kOp>
std::vector<Tensor> reduce(const KernelCall& c) {
  const Tensor& x = c.in(0);
  if constexpr (kOp == Reduce::kMax || kOp == Reduce::kMin) {
    // Bool: max is any, min is all; computed on the same bytes read as uint8.
    if (x.dtype() == DType::kBool) {
      Tensor bytes = Tensor::view(DType::kUInt8, x.shape(), x.raw());
      Tensor r = reduce_tensor<kOp>(c, bytes)[0];
      Tensor out(DType::kBool, r.shape());
      if (r.nbytes()) std::memcpy(out.raw_mut(), r.raw(), r.nbytes());
      return {out};
    }
  }
  return reduce_tensor<kOp>(c, x);
}

template <Reduce kOp>
std::vector<Tensor> reduce_tensor(const KernelCall& c, const Tensor& x) {
  std::vector<int64_t> axes;
  bool from_input = kOp == Reduce::kSum ? true : (kOp == Reduce::kArgMax ? false : c.opset >= 18);
  if (kOp == Reduce::kArgMax)
    axes = {c.node.attr_int("axis", 0)};
  else
    axes = from_input ? c.ints(1) : c.node.attr_ints("axes");
  bool keep = c.node.attr_int("keepdims", 1) != 0;
  const bool last_index = c.node.attr_int("select_last_index", 0) != 0;
  if (axes.empty() && c.node.attr_int("noop_with_empty_axes", 0) != 0) return {x};
  std::set<size_t> red;
  for (int64_t a : axes) red.insert(static_cast<size_t>(normalize_axis(c, a, x.rank())));
  if (axes.empty())
    for (size_t d = 0; d < x.rank(); ++d) red.insert(d);
  Shape kept_shape, out_shape;
  for (size_t d = 0; d < x.rank(); ++d) {
    bool r = red.count(d) > 0;
    kept_shape.push_back(r ? 1 : x.dim(d));
    if (!r)
      out_shape.push_back(x.dim(d));
    else if (keep)
      out_shape.push_back(1);
  }
  Tensor out(kOp == Reduce::kArgMax ? DType::kInt64 : x.dtype(), out_shape);
  int64_t n_out = shape_numel(kept_shape);
  int64_t n_red = x.numel() / std::max<int64_t>(1, n_out);
  // An empty set reduces to the identity of the reduction (ONNX): 0 for sums, -inf for max,
  // +inf for min, NaN for the mean (0 / 0); an arg-max of nothing has no answer.
  if (kOp == Reduce::kArgMax && n_red == 0 && n_out > 0) c.fail("ArgMax over an empty axis");
  std::vector<int64_t> xst = strides_of(x.shape());
  // Map every input element to its output slot.
  std::vector<int64_t> kst = strides_of(kept_shape);
  dispatch_type(x.dtype(), c, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      c.fail("reduction of bool is not supported");
    } else {
      std::vector<double> acc(static_cast<size_t>(n_out),
                              kOp == Reduce::kMax || kOp == Reduce::kArgMax
                                  ? -std::numeric_limits<double>::infinity()
                              : kOp == Reduce::kMin ? std::numeric_limits<double>::infinity()
                                                    : 0.0);
      std::vector<int64_t> arg(static_cast<size_t>(n_out), 0);
      std::vector<int64_t> first(static_cast<size_t>(n_out), 1);
      for (int64_t i = 0; i < x.numel(); ++i) {
        int64_t rem = i, o = 0, red_coord = 0;
        for (size_t d = 0; d < x.rank(); ++d) {
          int64_t coord = rem / xst[d];
          rem %= xst[d];
          if (!red.count(d))
            o += coord * kst[d];
          else
            red_coord = coord;
        }
        double v = static_cast<double>(x.data<T>()[i]);
        size_t oi = static_cast<size_t>(o);
        if constexpr (kOp == Reduce::kMax)
          acc[oi] = std::max(acc[oi], v);
        else if constexpr (kOp == Reduce::kMin)
          acc[oi] = std::min(acc[oi], v);
        else if constexpr (kOp == Reduce::kArgMax) {
          // select_last_index: of equal maxima, the last (else the first).
          if (first[oi] || v > acc[oi] || (last_index && v == acc[oi])) {
            acc[oi] = v;
            arg[oi] = red_coord;
            first[oi] = 0;
          }
        } else
          acc[oi] += v;
      }
      for (int64_t o = 0; o < n_out; ++o) {
        size_t oi = static_cast<size_t>(o);
        if constexpr (kOp == Reduce::kArgMax)
          out.data_mut<int64_t>()[o] = arg[oi];
        else if constexpr (kOp == Reduce::kMean)
          out.data_mut<T>()[o] = static_cast<T>(acc[oi] / static_cast<double>(n_red));
        else if (std::is_integral_v<T> && std::isinf(acc[oi]))  // an empty set's max or min
          out.data_mut<T>()[o] =
              acc[oi] < 0 ? std::numeric_limits<T>::lowest() : std::numeric_limits<T>::max();
        else
          out.data_mut<T>()[o] = static_cast<T>(acc[oi]);
      }
    }
  });
  return {out};
}

}  // namespace

void register_nn_ops(void (*add)(const char*, KernelFn)) {
  add("MatMul", matmul);
  add("Gemm", gemm);
  add("Softmax", softmax<false>);
  add("LogSoftmax", softmax<true>);
  add("LayerNormalization", layer_norm);
  add("ReduceMean", reduce<Reduce::kMean>);
  add("ReduceSum", reduce<Reduce::kSum>);
  add("ReduceMax", reduce<Reduce::kMax>);
  add("ReduceMin", reduce<Reduce::kMin>);
  add("ArgMax", reduce<Reduce::kArgMax>);
}

}  // namespace gptrt::reference

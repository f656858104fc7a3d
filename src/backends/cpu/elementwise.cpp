// Float32 elementwise ops of the CPU backend, multi-threaded: Add/Sub/Mul/Div with the
// broadcasts a transformer uses (equal shapes, a scalar, a trailing vector), Pow with a scalar
// exponent, Tanh. Any other form falls back to the reference kernel of the same op.
#include <cmath>

#include "backends/cpu/backend.h"
#include "backends/reference/kernels.h"

namespace gptrt::cpu {
namespace {

constexpr int64_t kChunk = 16384;  // elements per task

template <typename F>
void parallel_map(ThreadPool& pool, int64_t n, F f) {
  int64_t tasks = (n + kChunk - 1) / kChunk;
  pool.parallel_for(tasks, [&](int64_t t) {
    int64_t end = std::min(n, (t + 1) * kChunk);
    for (int64_t i = t * kChunk; i < end; ++i) f(i);
  });
}

bool is_f32(const Tensor* t) {
  return t && t->dtype() == DType::kFloat32;
}

// b is a trailing part of a's shape (b [..., C] broadcast over a's leading dims), or a scalar.
bool trails(const Shape& a, const Shape& b) {
  if (b.size() > a.size()) return false;
  size_t lead = a.size() - b.size();
  bool any_non_one = false;
  for (size_t i = 0; i < b.size(); ++i) {
    if (b[i] != a[lead + i]) return false;
    any_non_one = any_non_one || b[i] != 1;
  }
  return true;
}

enum class Bin { kAdd, kSub, kMul, kDiv };

template <Bin kOp>
inline float apply(float x, float y) {
  if constexpr (kOp == Bin::kAdd) return x + y;
  if constexpr (kOp == Bin::kSub) return x - y;
  if constexpr (kOp == Bin::kMul) return x * y;
  return x / y;
}

template <Bin kOp>
bool binary(const Tensor& a, const Tensor& b, ThreadPool& pool, const backends::OutputBuffers& buf,
            Tensor& out) {
  // a op b with b's elements repeating every b.numel() elements of a (b trails a or is scalar),
  // or the mirror case a scalar.
  bool swap = false;
  const Tensor* big = &a;
  const Tensor* small = &b;
  if (!trails(a.shape(), b.shape())) {
    if (a.numel() != 1 || b.numel() == 1) return false;
    swap = true;
    big = &b;
    small = &a;
  }
  out = buf.make(0, DType::kFloat32, big->shape());
  const float* x = big->data<float>();
  const float* y = small->data<float>();
  float* o = out.data_mut<float>();
  int64_t period = std::max<int64_t>(small->numel(), 1);
  if (period == 1) {
    float s = y[0];
    if (swap)
      parallel_map(pool, big->numel(), [&](int64_t i) { o[i] = apply<kOp>(s, x[i]); });
    else
      parallel_map(pool, big->numel(), [&](int64_t i) { o[i] = apply<kOp>(x[i], s); });
  } else {
    parallel_map(pool, big->numel(), [&](int64_t i) { o[i] = apply<kOp>(x[i], y[i % period]); });
  }
  return true;
}

}  // namespace

bool is_elementwise(const std::string& op) {
  return op == "Add" || op == "Sub" || op == "Mul" || op == "Div" || op == "Pow" || op == "Tanh";
}

std::vector<Tensor> run_elementwise(const ir::Node& node, const std::vector<const Tensor*>& in,
                                    ThreadPool& pool, const backends::OutputBuffers& buf) {
  const std::string& op = node.op_type;
  Tensor out;
  bool done = false;
  if (op == "Tanh" && is_f32(in[0])) {
    out = buf.make(0, DType::kFloat32, in[0]->shape());
    const float* x = in[0]->data<float>();
    float* o = out.data_mut<float>();
    int64_t n = in[0]->numel();
    pool.parallel_for((n + kChunk - 1) / kChunk, [&](int64_t t) {
      int64_t end = std::min(n, (t + 1) * kChunk);
      // 1 - 2 / (e^2x + 1): exact at both tails (e^2x -> 0 or inf), absolute error ~1e-7, and
      // vectorised through glibc's vector expf (compiled with -fopenmp-simd -fno-math-errno).
#pragma omp simd
      for (int64_t i = t * kChunk; i < end; ++i) o[i] = 1.f - 2.f / (std::exp(2.f * x[i]) + 1.f);
    });
    done = true;
  } else if (op == "Pow" && in.size() == 2 && is_f32(in[0]) && is_f32(in[1]) &&
             in[1]->numel() == 1) {
    float e = in[1]->data<float>()[0];
    out = buf.make(0, DType::kFloat32, in[0]->shape());
    const float* x = in[0]->data<float>();
    float* o = out.data_mut<float>();
    if (e == 2.f)
      parallel_map(pool, in[0]->numel(), [&](int64_t i) { o[i] = x[i] * x[i]; });
    else if (e == 3.f)
      parallel_map(pool, in[0]->numel(), [&](int64_t i) { o[i] = x[i] * x[i] * x[i]; });
    else
      parallel_map(pool, in[0]->numel(), [&](int64_t i) { o[i] = std::pow(x[i], e); });
    done = true;
  } else if (in.size() == 2 && is_f32(in[0]) && is_f32(in[1])) {
    if (op == "Add") done = binary<Bin::kAdd>(*in[0], *in[1], pool, buf, out);
    if (op == "Sub") done = binary<Bin::kSub>(*in[0], *in[1], pool, buf, out);
    if (op == "Mul") done = binary<Bin::kMul>(*in[0], *in[1], pool, buf, out);
    if (op == "Div") done = binary<Bin::kDiv>(*in[0], *in[1], pool, buf, out);
  }
  if (!done) {  // the ONNX op's reference kernel (same semantics from opset 13 on)
    ir::Node onnx_node = node;
    onnx_node.domain.clear();
    return reference::run_node(onnx_node, in, 17);
  }
  return {out};
}

}  // namespace gptrt::cpu

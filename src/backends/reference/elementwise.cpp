// Elementwise ops with numpy broadcasting: arithmetic, comparisons, logic, unary math, Where,
// Cast, Clip.
#include <cmath>
#include <cstring>
#include <type_traits>

#include "backends/reference/fused_ops.h"
#include "backends/reference/kernels.h"
#include "core/half.h"

namespace gptrt::reference {
namespace {

template <typename T>
constexpr bool kIsFloat = std::is_floating_point_v<T>;

// Applies f(a, b) -> R over two broadcast inputs.
template <typename T, typename R, typename F>
Tensor binary_map(const KernelCall& c, const Tensor& a, const Tensor& b, DType out_dtype, F f) {
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  // Common cases without index arithmetic: equal shapes, or one side a single element.
  if (a.shape() == b.shape() || (b.numel() == 1 && b.rank() <= a.rank())) {
    Tensor out(out_dtype, a.shape());
    R* po = out.data_mut<R>();
    int64_t n = a.numel();
    if (b.numel() == 1 && a.shape() != b.shape()) {
      T y = pb[0];
      for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], y);
    } else {
      for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
    }
    return out;
  }
  Broadcast bc = make_broadcast(c, {a.shape(), b.shape()});
  Tensor out(out_dtype, bc.out);
  R* po = out.data_mut<R>();
  for_each_broadcast(bc, [&](int64_t i, const int64_t* off) { po[i] = f(pa[off[0]], pb[off[1]]); });
  return out;
}

enum class Arith { kAdd, kSub, kMul, kDiv, kMod, kMax, kMin };

template <Arith kOp>
std::vector<Tensor> arith(const KernelCall& c) {
  Tensor acc = c.in(0);
  for (size_t k = 1; k < c.inputs.size(); ++k) {
    const Tensor& b = c.in(k);
    if (b.dtype() != acc.dtype()) c.fail("inputs have different dtypes");
    dispatch_type(acc.dtype(), c, [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_same_v<T, bool>) {
        c.fail("arithmetic on bool tensors is not supported");
      } else {
        bool fmod = c.node.attr_int("fmod", 0) != 0;
        acc = binary_map<T, T>(c, acc, b, acc.dtype(), [&](T x, T y) -> T {
          if constexpr (kOp == Arith::kAdd) return static_cast<T>(x + y);
          if constexpr (kOp == Arith::kSub) return static_cast<T>(x - y);
          if constexpr (kOp == Arith::kMul) return static_cast<T>(x * y);
          if constexpr (kOp == Arith::kMax)
            return std::isnan(static_cast<double>(x)) ? x : (x > y ? x : y);
          if constexpr (kOp == Arith::kMin)
            return std::isnan(static_cast<double>(x)) ? x : (x < y ? x : y);
          if constexpr (kOp == Arith::kDiv) {
            if constexpr (!kIsFloat<T>) {
              if (y == 0) c.fail("integer division by zero");
            }
            return static_cast<T>(x / y);
          }
          if constexpr (kOp == Arith::kMod) {
            if constexpr (kIsFloat<T>) {
              T r = std::fmod(x, y);
              if (!fmod && r != 0 && ((r < 0) != (y < 0))) r += y;
              return r;
            } else {
              if (y == 0) c.fail("integer modulo by zero");
              T r = static_cast<T>(x % y);
              if (!fmod && r != 0 && ((r < 0) != (y < 0))) r = static_cast<T>(r + y);
              return r;
            }
          }
          return x;
        });
      }
    });
  }
  return {acc};
}

std::vector<Tensor> pow_kernel(const KernelCall& c) {
  const Tensor& a = c.in(0);
  const Tensor& b = c.in(1);
  Broadcast bc = make_broadcast(c, {a.shape(), b.shape()});
  Tensor out(a.dtype(), bc.out);
  dispatch_type(a.dtype(), c, [&](auto ta) {
    using A = decltype(ta);
    dispatch_type(b.dtype(), c, [&](auto tb) {
      using B = decltype(tb);
      const A* pa = a.data<A>();
      const B* pb = b.data<B>();
      A* po = out.data_mut<A>();
      for_each_broadcast(bc, [&](int64_t i, const int64_t* off) {
        double x = static_cast<double>(pa[off[0]]), y = static_cast<double>(pb[off[1]]);
        // x*x is exact in float; pow(x, 2.0) in double rounded to float is too.
        po[i] = static_cast<A>(std::pow(x, y));
      });
    });
  });
  return {out};
}

enum class Cmp { kEq, kLt, kLe, kGt, kGe };

template <Cmp kOp>
std::vector<Tensor> compare(const KernelCall& c) {
  const Tensor& a = c.in(0);
  const Tensor& b = c.in(1);
  if (a.dtype() != b.dtype()) c.fail("inputs have different dtypes");
  Tensor out;
  dispatch_type(a.dtype(), c, [&](auto tag) {
    using T = decltype(tag);
    out = binary_map<T, bool>(c, a, b, DType::kBool, [](T x, T y) {
      if constexpr (kOp == Cmp::kEq) return x == y;
      if constexpr (kOp == Cmp::kLt) return x < y;
      if constexpr (kOp == Cmp::kLe) return x <= y;
      if constexpr (kOp == Cmp::kGt) return x > y;
      return x >= y;
    });
  });
  return {out};
}

enum class Logic { kAnd, kOr, kXor };

template <Logic kOp>
std::vector<Tensor> logic(const KernelCall& c) {
  const Tensor& a = c.in(0);
  const Tensor& b = c.in(1);
  if (a.dtype() != DType::kBool || b.dtype() != DType::kBool) c.fail("inputs must be bool");
  return {binary_map<bool, bool>(c, a, b, DType::kBool, [](bool x, bool y) {
    if constexpr (kOp == Logic::kAnd) return x && y;
    if constexpr (kOp == Logic::kOr) return x || y;
    return x != y;
  })};
}

enum class Unary {
  kNeg,
  kAbs,
  kSqrt,
  kExp,
  kLog,
  kTanh,
  kErf,
  kSigmoid,
  kRelu,
  kReciprocal,
  kFloor,
  kCeil,
  kSin,
  kCos,
  kGelu
};

template <Unary kOp>
std::vector<Tensor> unary(const KernelCall& c) {
  const Tensor& x = c.in(0);
  Tensor out(x.dtype(), x.shape());
  bool tanh_gelu = c.node.attr_string("approximate", "none") == "tanh";
  dispatch_type(x.dtype(), c, [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>();
    T* po = out.data_mut<T>();
    int64_t n = x.numel();
    if constexpr (std::is_same_v<T, bool>) {
      c.fail("op does not take bool input");
    } else if constexpr (kOp == Unary::kNeg) {
      for (int64_t i = 0; i < n; ++i) po[i] = static_cast<T>(-px[i]);
    } else if constexpr (kOp == Unary::kAbs) {
      for (int64_t i = 0; i < n; ++i) po[i] = px[i] < 0 ? static_cast<T>(-px[i]) : px[i];
    } else if constexpr (kOp == Unary::kRelu) {
      for (int64_t i = 0; i < n; ++i) po[i] = px[i] > 0 ? px[i] : T{0};
    } else if constexpr (!kIsFloat<T>) {
      c.fail(std::string("op needs a float input, found ") + dtype_name(x.dtype()));
    } else {
      for (int64_t i = 0; i < n; ++i) {
        double v = static_cast<double>(px[i]);
        double r = 0;
        switch (kOp) {
          case Unary::kSqrt:
            r = std::sqrt(v);
            break;
          case Unary::kExp:
            r = std::exp(v);
            break;
          case Unary::kLog:
            r = std::log(v);
            break;
          case Unary::kTanh:
            r = std::tanh(v);
            break;
          case Unary::kErf:
            r = std::erf(v);
            break;
          case Unary::kSigmoid:
            r = 1.0 / (1.0 + std::exp(-v));
            break;
          case Unary::kReciprocal:
            r = 1.0 / v;
            break;
          case Unary::kFloor:
            r = std::floor(v);
            break;
          case Unary::kCeil:
            r = std::ceil(v);
            break;
          case Unary::kSin:
            r = std::sin(v);
            break;
          case Unary::kCos:
            r = std::cos(v);
            break;
          case Unary::kGelu:
            r = tanh_gelu
                    ? 0.5 * v * (1.0 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)))
                    : 0.5 * v * (1.0 + std::erf(v * 0.7071067811865476));
            break;
          default:
            break;
        }
        po[i] = static_cast<T>(r);
      }
    }
  });
  return {out};
}

std::vector<Tensor> not_kernel(const KernelCall& c) {
  const Tensor& x = c.in(0);
  if (x.dtype() != DType::kBool) c.fail("input must be bool");
  Tensor out(DType::kBool, x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) out.data_mut<bool>()[i] = !x.data<bool>()[i];
  return {out};
}

template <bool kNaN>
std::vector<Tensor> is_special(const KernelCall& c) {
  const Tensor& x = c.in(0);
  Tensor out(DType::kBool, x.shape());
  bool pos = c.node.attr_int("detect_positive", 1) != 0,
       neg = c.node.attr_int("detect_negative", 1) != 0;
  dispatch_type(x.dtype(), c, [&](auto tag) {
    using T = decltype(tag);
    for (int64_t i = 0; i < x.numel(); ++i) {
      double v = static_cast<double>(x.data<T>()[i]);
      out.data_mut<bool>()[i] =
          kNaN ? std::isnan(v) : (std::isinf(v) && ((v > 0 && pos) || (v < 0 && neg)));
    }
  });
  return {out};
}

std::vector<Tensor> identity(const KernelCall& c) {
  if (c.node.op_type == "Dropout") {
    // Inference only: a run-time training_mode of true would mean random masks.
    if (const Tensor* training = c.optional(2);
        training && training->numel() == 1 && nonzero(*training, 0))
      c.fail(
          "training_mode is true: Dropout in training mode drops random values, which "
          "inference does not do; export the model in eval mode (model.eval()) or pass false");
  }
  std::vector<Tensor> outs{c.in(0)};
  if (c.node.outputs.size() > 1)
    outs.push_back(Tensor(DType::kBool, c.in(0).shape()));  // Dropout mask
  if (outs.size() > 1) std::memset(outs[1].raw_mut(), 1, outs[1].nbytes());
  return outs;
}

std::vector<Tensor> where(const KernelCall& c) {
  const Tensor& cond = c.in(0);
  const Tensor& a = c.in(1);
  const Tensor& b = c.in(2);
  if (cond.dtype() != DType::kBool) c.fail("condition must be bool");
  if (a.dtype() != b.dtype()) c.fail("X and Y have different dtypes");
  Broadcast bc = make_broadcast(c, {cond.shape(), a.shape(), b.shape()});
  Tensor out(a.dtype(), bc.out);
  size_t es = dtype_size(a.dtype());
  const auto* pc = cond.data<bool>();
  const auto* pa = static_cast<const uint8_t*>(a.raw());
  const auto* pb = static_cast<const uint8_t*>(b.raw());
  auto* po = static_cast<uint8_t*>(out.raw_mut());
  for_each_broadcast(bc, [&](int64_t i, const int64_t* off) {
    std::memcpy(po + i * es, pc[off[0]] ? pa + off[1] * es : pb + off[2] * es, es);
  });
  return {out};
}

// Element `i` of `t` as double (floats) or int64 (integers and bool).
double load_float(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::kFloat32:
      return t.data<float>()[i];
    case DType::kFloat64:
      return t.data<double>()[i];
    case DType::kFloat16:
      return half_to_float(t.data<uint16_t>()[i]);
    case DType::kBFloat16:
      return bf16_to_float(t.data<uint16_t>()[i]);
    default:
      return 0;
  }
}

int64_t load_int(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::kInt64:
      return t.data<int64_t>()[i];
    case DType::kInt32:
      return t.data<int32_t>()[i];
    case DType::kInt8:
      return t.data<int8_t>()[i];
    case DType::kUInt8:
      return t.data<uint8_t>()[i];
    case DType::kBool:
      return t.data<bool>()[i] ? 1 : 0;
    default:
      return 0;
  }
}

bool is_float_dtype(DType d) {
  return d == DType::kFloat32 || d == DType::kFloat64 || d == DType::kFloat16 ||
         d == DType::kBFloat16;
}

Tensor cast_to(const KernelCall& c, const Tensor& x, DType to) {
  if (x.dtype() == to) return x;
  Tensor out(to, x.shape());
  bool from_float = is_float_dtype(x.dtype());
  for (int64_t i = 0; i < x.numel(); ++i) {
    double f = from_float ? load_float(x, i) : static_cast<double>(load_int(x, i));
    int64_t n = from_float
                    ? (std::isfinite(f) && std::fabs(f) < 9.2e18 ? static_cast<int64_t>(f) : 0)
                    : load_int(x, i);
    switch (to) {
      case DType::kFloat32:
        out.data_mut<float>()[i] = static_cast<float>(f);
        break;
      case DType::kFloat64:
        out.data_mut<double>()[i] = f;
        break;
      case DType::kFloat16:
        out.data_mut<uint16_t>()[i] = float_to_half(static_cast<float>(f));
        break;
      case DType::kBFloat16:
        out.data_mut<uint16_t>()[i] = float_to_bf16(static_cast<float>(f));
        break;
      case DType::kInt64:
        out.data_mut<int64_t>()[i] = n;
        break;
      case DType::kInt32:
        out.data_mut<int32_t>()[i] = static_cast<int32_t>(n);
        break;
      case DType::kInt8:
        out.data_mut<int8_t>()[i] = static_cast<int8_t>(n);
        break;
      case DType::kUInt8:
        out.data_mut<uint8_t>()[i] = static_cast<uint8_t>(n);
        break;
      case DType::kBool:
        out.data_mut<bool>()[i] = from_float ? f != 0 : n != 0;
        break;
      default:
        c.fail(std::string("cannot cast to ") + dtype_name(to));
    }
  }
  return out;
}

std::vector<Tensor> cast(const KernelCall& c) {
  return {cast_to(c, c.in(0), static_cast<DType>(c.node.attr_int("to", 0)))};
}

std::vector<Tensor> cast_like(const KernelCall& c) {
  return {cast_to(c, c.in(0), c.in(1).dtype())};
}

std::vector<Tensor> clip(const KernelCall& c) {
  const Tensor& x = c.in(0);
  Tensor out(x.dtype(), x.shape());
  dispatch_type(x.dtype(), c, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      c.fail("Clip does not take bool");
    } else {
      T lo = std::numeric_limits<T>::lowest(), hi = std::numeric_limits<T>::max();
      for (int k = 1; k <= 2; ++k) {
        const Tensor* t = c.optional(static_cast<size_t>(k));
        if (!t) continue;
        if (t->numel() != 1 || t->dtype() != x.dtype())
          c.fail(std::string(k == 1 ? "min" : "max") + " must be one " + dtype_name(x.dtype()) +
                 " value, found " + dtype_name(t->dtype()) + " " + shape_str(t->shape()));
        (k == 1 ? lo : hi) = t->data<T>()[0];
      }
      // ONNX: max(min(...)) in that order, so min > max gives max everywhere.
      for (int64_t i = 0; i < x.numel(); ++i) {
        T v = x.data<T>()[i];
        v = v < lo ? lo : v;
        out.data_mut<T>()[i] = v > hi ? hi : v;
      }
    }
  });
  return {out};
}

}  // namespace

void register_elementwise(void (*add)(const char*, KernelFn)) {
  add("Add", arith<Arith::kAdd>);
  add("Sum", arith<Arith::kAdd>);
  add("Sub", arith<Arith::kSub>);
  add("Mul", arith<Arith::kMul>);
  add("Div", arith<Arith::kDiv>);
  add("Mod", arith<Arith::kMod>);
  add("Max", arith<Arith::kMax>);
  add("Min", arith<Arith::kMin>);
  add("Pow", pow_kernel);
  add("Equal", compare<Cmp::kEq>);
  add("Less", compare<Cmp::kLt>);
  add("LessOrEqual", compare<Cmp::kLe>);
  add("Greater", compare<Cmp::kGt>);
  add("GreaterOrEqual", compare<Cmp::kGe>);
  add("And", logic<Logic::kAnd>);
  add("Or", logic<Logic::kOr>);
  add("Xor", logic<Logic::kXor>);
  add("Neg", unary<Unary::kNeg>);
  add("Abs", unary<Unary::kAbs>);
  add("Sqrt", unary<Unary::kSqrt>);
  add("Exp", unary<Unary::kExp>);
  add("Log", unary<Unary::kLog>);
  add("Tanh", unary<Unary::kTanh>);
  add("Erf", unary<Unary::kErf>);
  add("Sigmoid", unary<Unary::kSigmoid>);
  add("Relu", unary<Unary::kRelu>);
  add("Reciprocal", unary<Unary::kReciprocal>);
  add("Floor", unary<Unary::kFloor>);
  add("Ceil", unary<Unary::kCeil>);
  add("Sin", unary<Unary::kSin>);
  add("Cos", unary<Unary::kCos>);
  add("Gelu", unary<Unary::kGelu>);
  add("Not", not_kernel);
  add("IsNaN", is_special<true>);
  add("IsInf", is_special<false>);
  add("Identity", identity);
  add("Dropout", identity);
  add("Where", where);
  add("Cast", cast);
  add("CastLike", cast_like);
  add("Clip", clip);
}

}  // namespace gptrt::reference

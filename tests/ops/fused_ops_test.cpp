// The CPU backend's kernels for the fused decoder ops against the reference kernels of the same
// ops, on fresh random inputs at odd sizes: LayerNorm, causal attention with padding masks,
// the embedding sum (plain and read from the packed LM head), and packed linear layers with
// their GELU/residual epilogues.
#include <cmath>
#include <random>

#include "backends/cpu/backend.h"
#include "backends/cpu/fused_kernels.h"
#include "backends/cpu/gemm.h"
#include "backends/reference/fused_ops.h"
#include "backends/reference/kernels.h"
#include "passes/pattern.h"
#include "test_util.h"

namespace gptrt::test {
namespace {

Tensor random_tensor(Shape shape, std::mt19937& rng, float scale = 1.f) {
  std::normal_distribution<float> nd(0.f, scale);
  Tensor t(DType::kFloat32, shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data_mut<float>()[i] = nd(rng);
  return t;
}

ir::Node fused_node(const std::string& op) {
  ir::Node n;
  n.name = "test";
  n.op_type = op;
  n.domain = ir::kFusedDomain;
  n.outputs = {0};
  return n;
}

// Relative 1e-5 of the larger magnitude, plus a small absolute floor.
void expect_close(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  for (int64_t i = 0; i < got.numel(); ++i) {
    float g = got.data<float>()[i], w = want.data<float>()[i];
    ASSERT_NEAR(g, w, 1e-5 * std::max(1.f, std::fabs(w))) << what << " at " << i;
  }
}

TEST(CpuFusedOps, LayerNormMatchesReference) {
  std::mt19937 rng(7);
  cpu::ThreadPool pool(3);
  for (int64_t e : {1, 7, 64, 129, 768}) {
    for (int64_t rows : {1, 5, 33}) {
      Tensor x = random_tensor({rows, e}, rng, 3.f), g = random_tensor({e}, rng),
             b = random_tensor({e}, rng);
      for (int64_t i = 0; i < x.numel(); ++i) x.data_mut<float>()[i] += 5.f;  // offset mean
      ir::Node ref;
      ref.op_type = "LayerNormalization";
      ref.outputs = {0};
      ref.attrs["epsilon"] = ir::float_attr(1e-5f);
      ir::Node fast = fused_node("LayerNorm");
      fast.attrs = ref.attrs;
      std::vector<const Tensor*> in = {&x, &g, &b};
      expect_close(cpu::run_node(fast, in, cpu::best_isa(), pool)[0],
                   reference::run_node(ref, in, 17)[0], "LayerNorm e=" + std::to_string(e));
    }
  }
}

TEST(CpuFusedOps, AttentionMatchesReferenceWithPaddingMasks) {
  std::mt19937 rng(11);
  cpu::ThreadPool pool(2);
  struct Case {
    int64_t b, s, heads, d;
  };
  // (Heads of 16, 32, 64 and 128 take the AVX-512 form where the CPU has it; 1 and 5 the loop.)
  for (Case c : {Case{1, 1, 1, 1}, Case{2, 7, 3, 5}, Case{3, 19, 2, 16}, Case{1, 40, 4, 64},
                 Case{3, 33, 2, 32}, Case{2, 21, 2, 128}}) {
    int64_t e = c.heads * c.d;
    Tensor qkv = random_tensor({c.b, c.s, 3 * e}, rng, 2.f);
    // Row r is left-padded by r; the last row of a batch of 3 is all padding.
    Tensor mask(DType::kInt64, {c.b, c.s});
    for (int64_t r = 0; r < c.b; ++r)
      for (int64_t t = 0; t < c.s; ++t)
        mask.data_mut<int64_t>()[r * c.s + t] = (t >= r && !(c.b == 3 && r == 2)) ? 1 : 0;
    ir::Node n = fused_node("Attention");
    n.attrs["num_heads"] = ir::int_attr(c.heads);
    n.attrs["scale"] = ir::float_attr(1.f / std::sqrt(float(c.d)));
    for (bool with_mask : {false, true}) {
      std::vector<const Tensor*> in = {&qkv};
      if (with_mask) in.push_back(&mask);
      expect_close(cpu::run_node(n, in, cpu::best_isa(), pool)[0],
                   reference::run_node(n, in, 17)[0],
                   "Attention s=" + std::to_string(c.s) + (with_mask ? " masked" : ""));
    }
  }
}

TEST(CpuFusedOps, EmbeddingMatchesReferencePlainAndFromThePackedHead) {
  std::mt19937 rng(3);
  cpu::ThreadPool pool(2);
  int64_t vocab = 37, e = 19, positions = 11;
  Tensor wte = random_tensor({vocab, e}, rng), wpe = random_tensor({positions, e}, rng);
  Tensor ids(DType::kInt64, {3, 5}), pos(DType::kInt32, {3, 5});
  for (int64_t i = 0; i < 15; ++i) {
    ids.data_mut<int64_t>()[i] = static_cast<int64_t>(rng() % vocab);
    pos.data_mut<int32_t>()[i] = static_cast<int32_t>(rng() % positions);
  }
  Tensor packed = cpu::pack_weights(wte, /*transposed=*/true);
  ir::Node n = fused_node("Embedding");
  for (bool with_pos : {false, true}) {
    std::vector<const Tensor*> in = {&ids, with_pos ? &pos : nullptr, &wte, &wpe};
    Tensor want = reference::run_node(n, in, 17)[0];
    expect_close(cpu::run_node(n, in, cpu::best_isa(), pool)[0], want, "Embedding");
    ir::Node p = n;
    p.attrs["packed"] = ir::int_attr(1);
    p.attrs["vocab"] = ir::int_attr(vocab);
    std::vector<const Tensor*> pin = {&ids, in[1], &packed, &wpe};
    expect_close(cpu::run_node(p, pin, cpu::best_isa(), pool)[0], want, "Embedding (packed)");
  }
  // An id past the vocabulary is an error, not a read past the table (the packed table has
  // padding columns up to a multiple of 16).
  ids.data_mut<int64_t>()[4] = vocab;
  ir::Node p = n;
  p.attrs["packed"] = ir::int_attr(1);
  p.attrs["vocab"] = ir::int_attr(vocab);
  std::vector<const Tensor*> pin = {&ids, nullptr, &packed, &wpe};
  EXPECT_THROW(cpu::run_node(p, pin, cpu::best_isa(), pool), Error);
}

TEST(CpuFusedOps, PackedLinearEpiloguesMatchReferenceLinear) {
  std::mt19937 rng(5);
  cpu::ThreadPool pool(2);
  for (cpu::Isa isa : {cpu::Isa::kGeneric, cpu::best_isa()}) {
    for (const char* act : {"", "gelu_tanh", "gelu_erf"}) {
      for (bool residual : {false, true}) {
        for (bool trans_b : {false, true}) {
          int64_t m = 13, k = 301, n = 37;
          Tensor x = random_tensor({m, k}, rng, 0.2f);
          Tensor w = trans_b ? random_tensor({n, k}, rng, 0.2f) : random_tensor({k, n}, rng, 0.2f);
          Tensor bias = random_tensor({n}, rng), res = random_tensor({m, n}, rng);
          ir::Node ref = fused_node("Linear");
          ref.attrs["transB"] = ir::int_attr(trans_b);
          if (*act) ref.attrs["activation"] = ir::string_attr(act);
          std::vector<const Tensor*> rin = {&x, &w, &bias};
          if (residual) rin.push_back(&res);
          Tensor want = reference::run_node(ref, rin, 17)[0];
          ir::Node fast = fused_node("PackedLinear");
          fast.attrs["K"] = ir::int_attr(k);
          fast.attrs["N"] = ir::int_attr(n);
          fast.attrs["activation"] = ir::int_attr(reference::activation_from_name(act));
          Tensor packed = cpu::pack_weights(w, trans_b);
          std::vector<const Tensor*> fin = {&x, &packed, &bias};
          if (residual) fin.push_back(&res);
          expect_close(cpu::run_node(fast, fin, isa, pool)[0], want,
                       std::string("Linear ") + act + (residual ? " +residual" : "") +
                           (trans_b ? " transB" : "") + " on " + cpu::isa_name(isa));
        }
      }
    }
  }
}

// Greedy decoding's pick: the first largest, as std::max_element, at odd lengths, with ties
// (values from a small set) and -inf.
TEST(CpuFusedOps, ArgmaxIsTheFirstLargest) {
  std::mt19937 rng(13);
  std::uniform_int_distribution<int> small(-3, 3);
  for (int64_t n : {1, 2, 15, 16, 17, 50257}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<float> x(static_cast<size_t>(n));
      for (float& v : x)
        v = trial % 2 ? static_cast<float>(small(rng)) : std::normal_distribution<float>()(rng);
      if (trial % 5 == 4)
        for (float& v : x) v = -INFINITY;
      ASSERT_EQ(cpu::argmax(x.data(), n), std::max_element(x.begin(), x.end()) - x.begin())
          << "n=" << n << " trial " << trial;
    }
  }
  EXPECT_EQ(cpu::argmax(nullptr, 0), 0);
}

TEST(CpuFusedOps, ActivationApproximationsAreAccurate) {
  for (float x = -12.f; x <= 12.f; x += 0.01f) {
    ASSERT_NEAR(cpu::gelu_tanh_approx(x), reference::gelu(x, true),
                2e-6 * std::max(1.f, std::fabs(x)))
        << x;
    ASSERT_NEAR(cpu::gelu_erf_approx(x), reference::gelu(x, false),
                2e-6 * std::max(1.f, std::fabs(x)))
        << x;
    ASSERT_NEAR(cpu::exp_approx(x), std::exp(double(x)), 3e-7 * std::exp(double(x))) << x;
  }
}

// Fuzzing found: a NaN (from weights an engine file holds) was cast to int inside exp, which is
// undefined; NaN now stays NaN, and the limits stay finite (UBSan checks the cast in CI).
TEST(CpuFusedOps, ApproximationsTakeNanAndInfinity) {
  EXPECT_TRUE(std::isnan(cpu::exp_approx(NAN)));
  EXPECT_TRUE(std::isnan(cpu::gelu_tanh_approx(NAN)));
  EXPECT_TRUE(std::isnan(cpu::gelu_erf_approx(NAN)));
  EXPECT_EQ(cpu::exp_approx(-INFINITY), cpu::exp_approx(-87.3f));
  EXPECT_EQ(cpu::exp_approx(INFINITY), cpu::exp_approx(88.3f));
  EXPECT_NEAR(cpu::exp_approx(88.3f), std::exp(double(88.3f)), 1e-6 * std::exp(double(88.3f)));
}

}  // namespace
}  // namespace gptrt::test

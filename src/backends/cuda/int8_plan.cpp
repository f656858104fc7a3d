// INT8 engines on the GPU: the plan with its INT8 weights dequantised to FP16 (once per engine),
// and the check of an INT8 plan's weights and scales when an engine file is loaded. Plain C++
// (no CUDA headers).
#include <map>
#include <mutex>

#include "backends/cuda/cuda_backend.h"
#include "backends/int8_weights.h"
#include "core/half.h"
#include "gptrt/error.h"

namespace gptrt::cuda {
namespace {

// An INT8 engine's FP16 plan, kept beside the engine that owns the original.
struct Fp16Plan {
  std::shared_ptr<const void> engine;
  ir::Graph graph;
};

std::mutex g_mu;
std::map<const void*, std::weak_ptr<Fp16Plan>> g_plans;

// q [N, K] int8 times scales [N] (or [N, groups]: groups of K / groups values) as FP16 [N, K].
Tensor dequantized(const Tensor& q, const Tensor& scales) {
  Tensor h(DType::kFloat16, q.shape());
  const int64_t n = q.dim(0), k = q.dim(1);
  const int64_t groups = scales.rank() == 2 ? scales.dim(1) : 1, group = k / groups;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c)
      h.data_mut<uint16_t>()[r * k + c] =
          float_to_half(static_cast<float>(q.data<int8_t>()[r * k + c]) *
                        scales.data<float>()[r * groups + c / group]);
  return h;
}

}  // namespace

RunnablePlan runnable_plan(std::shared_ptr<const void> owner, const ir::Graph& plan,
                           Precision precision) {
  if (precision != Precision::kInt8) return {std::move(owner), &plan, precision};
  std::lock_guard<std::mutex> lock(g_mu);
  std::shared_ptr<Fp16Plan> made = g_plans[owner.get()].lock();
  if (!made) {
    made = std::make_shared<Fp16Plan>();
    made->engine = owner;
    made->graph = plan;
    ir::Graph& g = made->graph;
    std::map<int, int> fp16_of;  // INT8 weight -> its FP16 copy
    for (ir::Node& n : g.nodes) {
      if (n.op_type != "Linear" || n.inputs.size() < 5 || n.inputs[4] < 0) continue;
      const int q = n.inputs[1];
      if (!fp16_of.count(q)) {
        const ir::Value& v = g.values[static_cast<size_t>(q)];
        const ir::Value& s = g.values[static_cast<size_t>(n.inputs[4])];
        fp16_of[q] = g.add_constant(v.name + ".fp16", dequantized(v.constant, s.constant));
      }
      n.inputs[1] = fp16_of[q];
      n.inputs.resize(4);
    }
    for (auto it = g_plans.begin(); it != g_plans.end();)  // (engines gone since)
      it = it->second.expired() ? g_plans.erase(it) : std::next(it);
    g_plans[owner.get()] = made;
  }
  const ir::Graph* graph = &made->graph;
  return {std::shared_ptr<const void>(made), graph, Precision::kFp16};
}

void check_int8_weights(const ir::Graph& plan, Precision precision, const std::string& path) {
  auto bad = [&](const ir::Node& n, const std::string& what) {
    throw Error(ErrorCode::kEngineMismatch, "engine '" + path + "': " + n.describe() + " " + what +
                                                "; the file is damaged or not from this "
                                                "gptrt: rebuild the engine");
  };
  const bool int8 = precision == Precision::kInt8;
  for (const ir::Node& n : plan.nodes) {
    if (n.op_type != "Linear") continue;
    const bool scaled = n.inputs.size() > 4 && n.inputs[4] >= 0;
    const ir::Value& w = plan.values[static_cast<size_t>(n.inputs[1])];
    const bool int8_w = w.dtype == DType::kInt8;
    if (!int8) {
      if (int8_w || scaled) bad(n, "has INT8 weights or scales in an engine that is not INT8");
      continue;
    }
    if (!int8_w || !scaled || !w.is_constant() || w.constant.rank() != 2)
      bad(n, "needs INT8 weights [N, K] and their scales (input 4) in an INT8 engine");
    const ir::Value& s = plan.values[static_cast<size_t>(n.inputs[4])];
    const int64_t k = w.constant.dim(1);
    const int64_t group = s.is_constant() ? backends::int8_group_of(s.constant.shape(), k) : 0;
    if (!s.is_constant() || s.dtype != DType::kFloat32 || group == 0 ||
        s.constant.dim(0) != w.constant.dim(0) ||
        (group != k && !backends::int8_group_problem(k, group).empty()))
      bad(n, "has scales " + shape_str(s.constant.shape()) + " for weights " +
                 shape_str(w.constant.shape()) + "; expected float32 [" +
                 std::to_string(w.constant.dim(0)) + "] or [" + std::to_string(w.constant.dim(0)) +
                 ", K / G] for groups of G (a multiple of 16 dividing K)");
  }
}

}  // namespace gptrt::cuda

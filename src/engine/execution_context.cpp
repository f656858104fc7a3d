#include <map>

#include "backends/cpu/backend.h"
#include "backends/cuda/cuda_backend.h"
#include "backends/reference/executor.h"
#include "backends/reference/kernels.h"
#include "engine/engine_impl.h"
#include "gptrt/error.h"
#include "platform/platform.h"

namespace gptrt {
namespace {

std::string profile_flags(const EngineInfo& info, const TensorMap& inputs) {
  std::string s;
  for (const TensorDesc& d : info.model.inputs) {
    auto it = inputs.find(d.name);
    if (it == inputs.end()) continue;
    s += (s.empty() ? "" : ",") + d.name + ":" + shape_dims_text(it->second.shape());
  }
  return s;
}

template <typename T>
void check_index_range(const std::string& name, const Tensor& t, int64_t limit) {
  const T* p = t.data<T>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    int64_t v = static_cast<int64_t>(p[i]);
    if (v < 0 || v >= limit) {
      std::string at;
      int64_t rem = i;
      Shape idx(t.rank());
      for (size_t d = t.rank(); d-- > 0;) {
        idx[d] = rem % t.dim(d);
        rem /= t.dim(d);
      }
      throw Error(ErrorCode::kInvalidArgument,
                  "input '" + name + "' holds " + std::to_string(v) + " at " + shape_str(idx) +
                      ", outside the valid range [0, " + std::to_string(limit) +
                      ") (the size of the table it indexes: vocabulary or positions); check the "
                      "tokenizer matches the model");
    }
  }
}

}  // namespace

namespace {

// The ISA of a cpu-backend engine, refused here if this CPU lacks it (an engine built with
// --cpuIsa for another machine can be saved, not run: its kernels would fault).
cpu::Isa runnable_isa(const Engine& engine) {
  if (engine.info().backend != Backend::kCpu) return cpu::Isa::kGeneric;
  cpu::Isa isa = cpu::isa_from_name(engine.info().target);
  if (!cpu::isa_supported(isa)) {
    throw Error(ErrorCode::kEngineMismatch,
                "this engine targets " + engine.info().target + " CPUs, and this CPU (" +
                    platform::cpu_info().model + ") supports " + cpu::isa_name(cpu::best_isa()) +
                    "; save it for a machine that has " + engine.info().target +
                    ", or rebuild with --cpuIsa=" + cpu::isa_name(cpu::best_isa()));
  }
  return isa;
}

// The cpu backend's activation arena: every value its kernels write, at the largest shape the
// engine's profiles admit, planned when the context is made (nothing is allocated per run).
// The largest value of every symbolic input dimension over the engine's profiles.
std::map<std::string, int64_t> profile_dim_max(const Engine& engine) {
  const ir::Graph& g = engine.impl().graph;
  std::map<std::string, int64_t> dim_max;
  for (int id : g.inputs) {
    const ir::Value& v = g.values[static_cast<size_t>(id)];
    for (const OptimizationProfile& p : engine.info().profiles) {
      const ShapeRange* r = p.find(v.name);
      if (!r) continue;
      for (size_t k = 0; k < v.shape.dims.size() && k < r->max.size(); ++k) {
        if (v.shape.dims[k].is_known()) continue;
        int64_t& m = dim_max[v.shape.dims[k].symbol];
        m = std::max(m, r->max[k]);
      }
    }
  }
  return dim_max;
}

reference::MemoryPlan activation_plan(const Engine& engine) {
  if (engine.info().backend != Backend::kCpu) return {};
  const ir::Graph& g = engine.impl().graph;
  reference::MemoryPlan plan = reference::plan_memory(
      g, profile_dim_max(engine),
      [](const ir::Node& n) { return n.domain == ir::kFusedDomain && cpu::has_kernel(n.op_type); });
  // Beyond this the arena is not worth reserving (a profile up to 64 x 1024 on a large model):
  // those contexts allocate per value from the tensor block cache instead.
  constexpr int64_t kMaxArena = int64_t{8} << 30;
  return plan.total <= kMaxArena ? plan : reference::MemoryPlan{};
}

}  // namespace

struct ExecutionContext::State {
  State(const Engine& engine, int threads)
      : pool(threads > 0 ? threads : platform::cpu_info().logical_cores),
        isa(runnable_isa(engine)),
        executor(
            engine.impl().graph,
            [this, opset = engine.impl().graph.opset](const ir::Node& n,
                                                      const std::vector<const Tensor*>& in,
                                                      const reference::OutputBuffers& out) {
              return cpu::has_kernel(n.op_type) ? cpu::run_node(n, in, isa, pool, out)
                                                : reference::run_node(n, in, opset);
            },
            activation_plan(engine)) {}
  cpu::ThreadPool pool;
  cpu::Isa isa;
  reference::Executor executor;
  std::unique_ptr<cuda::Runner> gpu;  // the CUDA backend's runner
  ExecutionContext::Timings timings;
  bool profiling = false;
  reference::Executor::Profile profile;
};

ExecutionContext::ExecutionContext(std::shared_ptr<const Engine> engine, int threads)
    : engine_(std::move(engine)),
      state_(std::make_unique<State>(*engine_,
                                     engine_->info().backend == Backend::kCuda ? 1 : threads)) {
  if (engine_->info().backend != Backend::kCuda) return;
  std::string why;
  if (cuda::device_sm(&why).empty())
    throw Error(ErrorCode::kEngineMismatch,
                "this engine is for the CUDA backend (" + engine_->info().target + ") and " + why);
  state_->gpu = std::make_unique<cuda::Runner>(std::shared_ptr<const void>(engine_, engine_.get()),
                                               engine_->impl().graph, engine_->info().precision,
                                               profile_dim_max(*engine_));
}

ExecutionContext::Timings ExecutionContext::last_timings() const {
  return state_->timings;
}

void ExecutionContext::set_cuda_graphs(bool on) {
  if (state_->gpu) state_->gpu->set_use_graphs(on);
}

ExecutionContext::~ExecutionContext() = default;

int ExecutionContext::threads() const {
  return state_->pool.size();
}

int ExecutionContext::check_inputs(const TensorMap& inputs) const {
  const EngineInfo& info = engine_->info();
  std::string names;
  for (const TensorDesc& d : info.model.inputs) names += (names.empty() ? "" : ", ") + d.name;
  for (const auto& [name, t] : inputs) {
    bool known = false;
    for (const TensorDesc& d : info.model.inputs) known = known || d.name == name;
    if (!known)
      throw Error(ErrorCode::kInvalidArgument,
                  "'" + name + "' is not an input of this engine; its inputs are: " + names);
  }
  std::map<std::string, std::pair<std::string, int64_t>> symbols;
  for (const TensorDesc& d : info.model.inputs) {
    auto it = inputs.find(d.name);
    if (it == inputs.end())
      throw Error(ErrorCode::kInvalidArgument,
                  "input '" + d.name + "' is missing; this engine needs: " + names);
    const Tensor& t = it->second;
    if (t.dtype() != d.dtype) {
      throw Error(ErrorCode::kInvalidArgument,
                  "input '" + d.name + "' has dtype " + dtype_name(t.dtype()) + ", expected " +
                      dtype_name(d.dtype) + "; convert it (numpy: .astype(np." +
                      dtype_name(d.dtype) + "))");
    }
    if (t.rank() != d.dims.size()) {
      throw Error(ErrorCode::kShapeError, "input '" + d.name + "' has shape " +
                                              shape_str(t.shape()) + " (rank " +
                                              std::to_string(t.rank()) + "), expected rank " +
                                              std::to_string(d.dims.size()));
    }
    for (size_t k = 0; k < d.dims.size(); ++k) {
      if (d.dims[k] >= 0 && t.dim(k) != d.dims[k]) {
        throw Error(ErrorCode::kShapeError,
                    "input '" + d.name + "' dimension " + std::to_string(k) + " is " +
                        std::to_string(t.dim(k)) + ", the model fixes it at " +
                        std::to_string(d.dims[k]));
      }
      if (d.dims[k] < 0 && !d.dim_names[k].empty()) {
        auto [pos, inserted] = symbols.try_emplace(d.dim_names[k], d.name, t.dim(k));
        if (!inserted && pos->second.second != t.dim(k)) {
          throw Error(ErrorCode::kShapeError,
                      "input '" + d.name + "' dimension " + std::to_string(k) + " (" +
                          d.dim_names[k] + ") is " + std::to_string(t.dim(k)) + " but input '" +
                          pos->second.first + "' has " + std::to_string(pos->second.second) +
                          " for " + d.dim_names[k] + "; they must agree");
        }
      }
    }
  }
  for (size_t p = 0; p < info.profiles.size(); ++p) {
    bool ok = true;
    for (const auto& [name, r] : info.profiles[p].inputs) {
      const Tensor& t = inputs.at(name);
      for (size_t k = 0; k < t.rank() && ok; ++k) ok = t.dim(k) >= r.min[k] && t.dim(k) <= r.max[k];
    }
    if (ok) {
      for (const auto& [name, limit] : info.index_limits) {
        const Tensor& t = inputs.at(name);
        if (t.dtype() == DType::kInt64)
          check_index_range<int64_t>(name, t, limit);
        else if (t.dtype() == DType::kInt32)
          check_index_range<int32_t>(name, t, limit);
      }
      return static_cast<int>(p);
    }
  }
  // Name the first offending dimension against each profile.
  std::string msg;
  for (const auto& [name, r0] : info.profiles[0].inputs) {
    const Tensor& t = inputs.at(name);
    for (size_t k = 0; k < t.rank() && msg.empty(); ++k) {
      bool outside_all = true;
      for (const OptimizationProfile& prof : info.profiles) {
        const ShapeRange* r = prof.find(name);
        outside_all = outside_all && r && (t.dim(k) < r->min[k] || t.dim(k) > r->max[k]);
      }
      if (!outside_all) continue;
      const TensorDesc* desc = nullptr;
      for (const TensorDesc& d : info.model.inputs)
        if (d.name == name) desc = &d;
      std::string dim_name =
          desc && !desc->dim_names[k].empty() ? " (" + desc->dim_names[k] + ")" : "";
      msg = "input '" + name + "' dimension " + std::to_string(k) + dim_name + " is " +
            std::to_string(t.dim(k)) + ", outside every optimization profile of this engine:";
      for (size_t p = 0; p < info.profiles.size(); ++p) {
        const ShapeRange* r = info.profiles[p].find(name);
        msg += "\n  profile " + std::to_string(p) + " admits " + std::to_string(r->min[k]) + ".." +
               std::to_string(r->max[k]) + " (min " + shape_dims_text(r->min) + ", max " +
               shape_dims_text(r->max) + ")";
      }
    }
  }
  if (msg.empty())
    msg =
        "the input shapes fit no single optimization profile of this engine (each dimension fits "
        "some profile, but not all in one)";
  msg += "\nrebuild the engine with a profile that admits these shapes, e.g. --maxShapes=" +
         profile_flags(info, inputs);
  throw Error(ErrorCode::kShapeError, msg);
}

std::vector<Tensor> ExecutionContext::execute(const TensorMap& inputs) {
  check_inputs(inputs);
  if (state_->gpu) {
    cuda::Timings t;
    std::vector<Tensor> out =
        state_->gpu->run(inputs, &t, state_->profiling ? &state_->profile : nullptr);
    state_->timings = Timings{t.h2d_ms, t.compute_ms, t.d2h_ms};
    return out;
  }
  return state_->executor.run(inputs, state_->profiling ? &state_->profile : nullptr);
}

void ExecutionContext::set_profiling(bool on) {
  state_->profiling = on;
  if (on) state_->profile.clear();
}

int64_t ExecutionContext::activation_arena_bytes() const {
  return state_->gpu ? state_->gpu->activation_bytes() : state_->executor.arena_bytes();
}

std::map<std::string, std::pair<double, int64_t>> ExecutionContext::profile() const {
  return state_->profile;
}

}  // namespace gptrt

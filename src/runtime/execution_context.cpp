#include <map>

#include "backends/backend.h"
#include "gptrt/error.h"
#include "platform/platform.h"
#include "runtime/engine_impl.h"
#include "runtime/executor.h"
#include "runtime/plan_ref.h"

namespace gptrt {
namespace {

// The error for input `name` [shape] holding `v` at flat index `i`, outside [0, limit).
Error index_range_error(const std::string& name, const Shape& shape, int64_t i, int64_t v,
                        int64_t limit) {
  Shape idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = i % shape[d];
    i /= shape[d];
  }
  if (limit == 2 && name.find("mask") != std::string::npos)
    return Error(ErrorCode::kInvalidArgument,
                 "input '" + name + "' holds " + std::to_string(v) + " at " + shape_str(idx) +
                     "; an attention mask holds 1 (a token) or 0 (padding)");
  return Error(ErrorCode::kInvalidArgument,
               "input '" + name + "' holds " + std::to_string(v) + " at " + shape_str(idx) +
                   ", outside the valid range [0, " + std::to_string(limit) +
                   ") (the size of the table it indexes: vocabulary or positions); check the "
                   "tokenizer matches the model");
}

template <typename T>
void check_index_range(const std::string& name, const Tensor& t, int64_t limit) {
  const T* p = t.data<T>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    int64_t v = static_cast<int64_t>(p[i]);
    if (v < 0 || v >= limit) throw index_range_error(name, t.shape(), i, v, limit);
  }
}

// Names, dtypes, ranks, fixed dimensions and agreeing symbols of `inputs` (name -> dtype, shape)
// against the engine's declared inputs; the symbols' values by name.
std::map<std::string, int64_t> check_declared(
    const EngineInfo& info, const std::map<std::string, std::pair<DType, Shape>>& inputs) {
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
    const auto& [dtype, shape] = it->second;
    if (dtype != d.dtype) {
      throw Error(ErrorCode::kInvalidArgument,
                  "input '" + d.name + "' has dtype " + dtype_name(dtype) + ", expected " +
                      dtype_name(d.dtype) + "; convert it (numpy: .astype(np." +
                      dtype_name(d.dtype) + "))");
    }
    if (shape.size() != d.dims.size()) {
      throw Error(ErrorCode::kShapeError, "input '" + d.name + "' has shape " + shape_str(shape) +
                                              " (rank " + std::to_string(shape.size()) +
                                              "), expected rank " + std::to_string(d.dims.size()));
    }
    for (size_t k = 0; k < d.dims.size(); ++k) {
      if (d.dims[k] >= 0 && shape[k] != d.dims[k]) {
        throw Error(ErrorCode::kShapeError,
                    "input '" + d.name + "' dimension " + std::to_string(k) + " is " +
                        std::to_string(shape[k]) + ", the model fixes it at " +
                        std::to_string(d.dims[k]));
      }
      if (d.dims[k] < 0 && !d.dim_names[k].empty()) {
        auto [pos, inserted] = symbols.try_emplace(d.dim_names[k], d.name, shape[k]);
        if (!inserted && pos->second.second != shape[k]) {
          throw Error(ErrorCode::kShapeError,
                      "input '" + d.name + "' dimension " + std::to_string(k) + " (" +
                          d.dim_names[k] + ") is " + std::to_string(shape[k]) + " but input '" +
                          pos->second.first + "' has " + std::to_string(pos->second.second) +
                          " for " + d.dim_names[k] + "; they must agree");
        }
      }
    }
  }
  std::map<std::string, int64_t> values;
  for (const auto& [symbol, where] : symbols) values[symbol] = where.second;
  return values;
}

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

// The activation arena of a plan the executor walks: every value its backend's kernels write, at
// the largest shape the engine's profiles admit, planned when the context is made (nothing is
// allocated per run).
ir::MemoryPlan activation_plan(const backends::PlanRef& plan, const backends::NodeKernels& k) {
  ir::MemoryPlan p = ir::plan_memory(*plan.graph, plan.dim_max,
                                     [&](const ir::Node& n) { return k.writes_planned(n); });
  // Beyond this the arena is not worth reserving (a profile up to 64 x 1024 on a large model):
  // those contexts allocate per value from the tensor block cache instead.
  constexpr int64_t kMaxArena = int64_t{8} << 30;
  return p.total <= kMaxArena ? p : ir::MemoryPlan{};
}

}  // namespace

backends::PlanRef plan_ref(const std::shared_ptr<const Engine>& engine) {
  backends::PlanRef p;
  p.owner = std::shared_ptr<const void>(engine, engine.get());
  p.graph = &engine->impl().graph;
  p.info = &engine->info();
  p.dim_max = profile_dim_max(*engine);
  return p;
}

struct ExecutionContext::State {
  // A backend either runs whole plans (runner) or gives per-node kernels the executor walks.
  std::unique_ptr<backends::PlanRunner> runner;
  std::unique_ptr<backends::NodeKernels> kernels;
  std::unique_ptr<runtime::Executor> executor;
  bool profiling = false;
  backends::Profile profile;
};

ExecutionContext::ExecutionContext(std::shared_ptr<const Engine> engine, int threads)
    : engine_(std::move(engine)), state_(std::make_unique<State>()) {
  const backends::Backend& backend = backends::get(engine_->info().backend);
  backends::PlanRef plan = plan_ref(engine_);
  state_->runner = backend.make_runner(plan, threads);
  if (state_->runner) return;
  state_->kernels = backend.make_kernels(plan, threads);
  state_->executor = std::make_unique<runtime::Executor>(*plan.graph, state_->kernels.get(),
                                                         activation_plan(plan, *state_->kernels));
}

ExecutionContext::Timings ExecutionContext::last_timings() const {
  return state_->runner ? state_->runner->last_timings() : Timings{};
}

void ExecutionContext::set_cuda_graphs(bool on) {
  if (state_->runner) state_->runner->set_graphs(on);
}

ExecutionContext::~ExecutionContext() = default;

int ExecutionContext::threads() const {
  return state_->kernels ? state_->kernels->threads() : 1;
}

int ExecutionContext::check_inputs(const TensorMap& inputs) const {
  const EngineInfo& info = engine_->info();
  std::map<std::string, std::pair<DType, Shape>> declared;
  for (const auto& [name, t] : inputs) declared[name] = {t.dtype(), t.shape()};
  check_declared(info, declared);
  std::map<std::string, Shape> shapes;
  for (const auto& [name, t] : inputs) shapes[name] = t.shape();
  const int p = engine_->profile_for(shapes);
  for (const auto& [name, limit] : info.index_limits) {
    const Tensor& t = inputs.at(name);
    if (t.dtype() == DType::kInt64)
      check_index_range<int64_t>(name, t, limit);
    else if (t.dtype() == DType::kInt32)
      check_index_range<int32_t>(name, t, limit);
  }
  return p;
}

std::vector<Shape> ExecutionContext::output_shapes(
    const std::map<std::string, Shape>& inputs) const {
  const EngineInfo& info = engine_->info();
  std::map<std::string, std::pair<DType, Shape>> declared;
  for (const auto& [name, shape] : inputs) {
    DType dtype = DType::kUndefined;
    for (const TensorDesc& d : info.model.inputs)
      if (d.name == name) dtype = d.dtype;
    declared[name] = {dtype, shape};
  }
  std::map<std::string, int64_t> symbols = check_declared(info, declared);
  engine_->profile_for(inputs);
  std::vector<Shape> out;
  for (const TensorDesc& d : info.model.outputs) {
    Shape s(d.dims.size());
    for (size_t k = 0; k < d.dims.size(); ++k) {
      auto it = symbols.find(d.dim_names[k]);
      if (d.dims[k] >= 0)
        s[k] = d.dims[k];
      else if (it != symbols.end())
        s[k] = it->second;
      else
        throw Error(ErrorCode::kUnsupported,
                    "output '" + d.name + "' dimension " + std::to_string(k) + " (" +
                        (d.dim_names[k].empty() ? "unnamed" : d.dim_names[k]) +
                        ") is not an input dimension: its size is known only after a run");
    }
    out.push_back(std::move(s));
  }
  return out;
}

void ExecutionContext::execute_on_device(const std::map<std::string, DeviceTensor>& inputs,
                                         const std::vector<DeviceTensor>& outputs, void* stream) {
  const EngineInfo& info = engine_->info();
  if (!state_->runner || !backends::get(info.backend).on_device())
    throw Error(ErrorCode::kUnsupported,
                "execute_on_device: this engine's backend (" +
                    std::string(backend_name(info.backend)) +
                    ") runs on the host; pass host tensors to execute(), or build the engine for "
                    "the cuda backend");
  std::map<std::string, std::pair<DType, Shape>> declared;
  std::map<std::string, Shape> shapes;
  for (const auto& [name, t] : inputs) {
    declared[name] = {t.dtype, t.shape};
    shapes[name] = t.shape;
    if (!t.data && shape_numel(t.shape) > 0)
      throw Error(ErrorCode::kInvalidArgument, "input '" + name + "' has no device pointer");
  }
  check_declared(info, declared);
  std::vector<Shape> want = output_shapes(shapes);
  if (outputs.size() != want.size())
    throw Error(ErrorCode::kInvalidArgument,
                "execute_on_device: " + std::to_string(outputs.size()) +
                    " output buffers given, the engine has " + std::to_string(want.size()) +
                    " outputs");
  for (size_t i = 0; i < want.size(); ++i) {
    const TensorDesc& d = info.model.outputs[i];
    if (outputs[i].dtype != d.dtype || outputs[i].shape != want[i] || !outputs[i].data)
      throw Error(ErrorCode::kShapeError,
                  "output '" + d.name + "' buffer is " + dtype_name(outputs[i].dtype) + " " +
                      shape_str(outputs[i].shape) + (outputs[i].data ? "" : " (null)") +
                      ", expected " + dtype_name(d.dtype) + " " + shape_str(want[i]) +
                      " in device memory");
  }
  backends::BadValue bad = state_->runner->run_device(inputs, outputs, info.index_limits, stream);
  if (!bad.input.empty())
    throw index_range_error(bad.input, inputs.at(bad.input).shape, bad.index, bad.value,
                            info.index_limits.at(bad.input));
}

std::vector<Tensor> ExecutionContext::execute(const TensorMap& inputs) {
  check_inputs(inputs);
  backends::Profile* profile = state_->profiling ? &state_->profile : nullptr;
  return state_->runner ? state_->runner->run(inputs, profile)
                        : state_->executor->run(inputs, profile);
}

void ExecutionContext::set_profiling(bool on) {
  state_->profiling = on;
  if (on) state_->profile.clear();
}

int64_t ExecutionContext::activation_arena_bytes() const {
  return state_->runner ? state_->runner->activation_bytes() : state_->executor->arena_bytes();
}

std::map<std::string, std::pair<double, int64_t>> ExecutionContext::profile() const {
  return state_->profile;
}

}  // namespace gptrt

// Which optimization profile admits a set of input shapes, or why none does.
#include "gptrt/error.h"
#include "runtime/engine_impl.h"

namespace gptrt {
namespace {

bool admits(const ShapeRange& r, const Shape& s) {
  if (s.size() != r.min.size()) return false;
  for (size_t k = 0; k < s.size(); ++k)
    if (s[k] < r.min[k] || s[k] > r.max[k]) return false;
  return true;
}

}  // namespace

int Engine::profile_for(const std::map<std::string, Shape>& shapes) const {
  const EngineInfo& info = impl_->info;
  for (size_t p = 0; p < info.profiles.size(); ++p) {
    bool ok = true;
    for (const auto& [name, r] : info.profiles[p].inputs) {
      auto it = shapes.find(name);
      ok = ok && it != shapes.end() && admits(r, it->second);
    }
    if (ok) return static_cast<int>(p);
  }
  // Name the first offending dimension against each profile.
  std::string msg;
  for (const auto& [name, r0] : info.profiles[0].inputs) {
    auto it = shapes.find(name);
    if (it == shapes.end()) {
      msg = "input '" + name + "' is missing";
      break;
    }
    const Shape& s = it->second;
    if (s.size() != r0.min.size()) {
      msg = "input '" + name + "' has rank " + std::to_string(s.size()) + ", the profiles give " +
            std::to_string(r0.min.size());
      break;
    }
    for (size_t k = 0; k < s.size() && msg.empty(); ++k) {
      bool outside_all = true;
      for (const OptimizationProfile& prof : info.profiles) {
        const ShapeRange* r = prof.find(name);
        outside_all = outside_all && r && (s[k] < r->min[k] || s[k] > r->max[k]);
      }
      if (!outside_all) continue;
      const TensorDesc* desc = nullptr;
      for (const TensorDesc& d : info.model.inputs)
        if (d.name == name) desc = &d;
      std::string dim_name = desc && k < desc->dim_names.size() && !desc->dim_names[k].empty()
                                 ? " (" + desc->dim_names[k] + ")"
                                 : "";
      msg = "input '" + name + "' dimension " + std::to_string(k) + dim_name + " is " +
            std::to_string(s[k]) + ", outside every optimization profile of this engine:";
      for (size_t p = 0; p < info.profiles.size(); ++p) {
        const ShapeRange* r = info.profiles[p].find(name);
        msg += "\n  profile " + std::to_string(p) + " admits " + std::to_string(r->min[k]) + ".." +
               std::to_string(r->max[k]) + " (min " + shape_dims_text(r->min) + ", max " +
               shape_dims_text(r->max) + ")";
      }
    }
    if (!msg.empty()) break;
  }
  if (msg.empty())
    msg =
        "the input shapes fit no single optimization profile of this engine (each dimension fits "
        "some profile, but not all in one)";
  std::string flags;
  for (const TensorDesc& d : info.model.inputs) {
    auto it = shapes.find(d.name);
    if (it != shapes.end())
      flags += (flags.empty() ? "" : ",") + d.name + ":" + shape_dims_text(it->second);
  }
  msg += "\nrebuild the engine with a profile that admits these shapes, e.g. --maxShapes=" + flags;
  throw Error(ErrorCode::kShapeError, msg);
}

}  // namespace gptrt

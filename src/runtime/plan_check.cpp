// Checks of a plan before it runs: optimization profiles (at build and at load) and the whole
// plan of a loaded engine file, node by node.
#include "runtime/plan_check.h"

#include <map>
#include <set>

#include "core/checked.h"
#include "gptrt/error.h"
#include "ir/shape_inference.h"

namespace gptrt {
namespace {

bool same_info(const ir::Value& a, const ir::Value& b) {
  if (a.dtype != b.dtype || a.shape.rank_known != b.shape.rank_known) return false;
  if (!a.shape.rank_known) return true;
  if (a.shape.dims.size() != b.shape.dims.size()) return false;
  for (size_t k = 0; k < a.shape.dims.size(); ++k) {
    const ir::Dim &x = a.shape.dims[k], &y = b.shape.dims[k];
    if (x.is_known() && y.is_known() && x.value != y.value) return false;
  }
  return true;
}

std::string info_text(const ir::Value& v) {
  return std::string(dtype_name(v.dtype)) + " " + v.shape.str();
}

// Rows of the table an index input reads through `n` (Embedding ids, Gather on axis 0 of a
// constant table), or -1.
int64_t indexed_rows(const ir::Graph& g, const ir::Node& n, int input) {
  if (n.domain == ir::kFusedDomain && n.op_type == "Embedding" && !n.inputs.empty() &&
      n.inputs[0] == input) {
    if (n.attr_int("packed", 0)) return n.attr_int("vocab", 0);
    const ir::Value* t = g.input(n, 2);
    return t && t->shape.rank_known && !t->shape.dims.empty() && t->shape.dims[0].is_known()
               ? t->shape.dims[0].value
               : -1;
  }
  if (n.domain.empty() && n.op_type == "Gather" && n.inputs.size() == 2 && n.inputs[1] == input &&
      n.attr_int("axis", 0) == 0) {
    const ir::Value* t = g.input(n, 0);
    return t && t->is_constant() && t->constant.rank() >= 1 ? t->constant.dim(0) : -1;
  }
  return -1;
}

}  // namespace

void check_profile(const ir::Graph& g, const OptimizationProfile& p, size_t index,
                   int64_t n_positions) {
  std::string where = "optimization profile " + std::to_string(index);
  std::set<std::string> names;
  for (int id : g.inputs) names.insert(g.values[static_cast<size_t>(id)].name);
  std::set<std::string> given;
  for (const auto& [name, r] : p.inputs) {
    if (!given.insert(name).second)
      throw Error(ErrorCode::kInvalidArgument, where + " gives input '" + name + "' twice");
    if (!names.count(name)) {
      std::string list;
      for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
      throw Error(ErrorCode::kInvalidArgument,
                  where + " names input '" + name +
                      "', which the model does not have; its inputs are: " + list);
    }
  }
  std::map<std::string, std::pair<std::string, std::pair<int64_t, int64_t>>> by_symbol;
  for (int id : g.inputs) {
    const ir::Value& v = g.values[static_cast<size_t>(id)];
    const ShapeRange* r = p.find(v.name);
    if (!r) {
      throw Error(ErrorCode::kInvalidArgument,
                  where + " gives no shape for input '" + v.name +
                      "'; add it to --minShapes, --optShapes and --maxShapes (e.g. " + v.name +
                      ":1x12)");
    }
    size_t rank = v.shape.dims.size();
    if (r->min.size() != rank || r->opt.size() != rank || r->max.size() != rank) {
      throw Error(ErrorCode::kInvalidArgument,
                  where + ": input '" + v.name + "' has rank " + std::to_string(rank) + " " +
                      v.shape.str() + ", but the profile gives " + shape_dims_text(r->min) + " / " +
                      shape_dims_text(r->opt) + " / " + shape_dims_text(r->max));
    }
    checked::bytes(r->max, v.dtype, where + ": input '" + v.name + "' at its max shape",
                   ErrorCode::kInvalidArgument);
    for (size_t d = 0; d < rank; ++d) {
      const ir::Dim& dim = v.shape.dims[d];
      int64_t lo = r->min[d], opt = r->opt[d], hi = r->max[d];
      std::string dn = "input '" + v.name + "' dimension " + std::to_string(d) +
                       (dim.is_known() ? "" : " (" + dim.symbol + ")");
      // Zero-size dimensions are legal (an empty past, an empty set): 0 <= min.
      if (lo < 0 || !(lo <= opt && opt <= hi)) {
        throw Error(ErrorCode::kInvalidArgument,
                    where + ": " + dn + " needs 0 <= min <= opt <= max, found min " +
                        std::to_string(lo) + ", opt " + std::to_string(opt) + ", max " +
                        std::to_string(hi));
      }
      if (dim.is_known() && (lo != dim.value || hi != dim.value)) {
        throw Error(ErrorCode::kInvalidArgument,
                    where + ": " + dn + " is fixed at " + std::to_string(dim.value) +
                        " by the model, the profile gives " + std::to_string(lo) + ".." +
                        std::to_string(hi));
      }
      if (!dim.is_known()) {
        auto it = by_symbol.find(dim.symbol);
        if (it == by_symbol.end()) {
          by_symbol[dim.symbol] = {v.name, {lo, hi}};
        } else if (it->second.second != std::make_pair(lo, hi)) {
          throw Error(ErrorCode::kInvalidArgument,
                      where + ": " + dn + " ranges " + std::to_string(lo) + ".." +
                          std::to_string(hi) + " but input '" + it->second.first + "' ranges " +
                          std::to_string(it->second.second.first) + ".." +
                          std::to_string(it->second.second.second) + " for the same dimension " +
                          dim.symbol + "; give both inputs the same shapes");
        }
      }
      if (d == 1 && rank == 2 && n_positions > 0 && hi > n_positions && !dim.is_known()) {
        throw Error(ErrorCode::kInvalidArgument,
                    where + ": " + dn + " max " + std::to_string(hi) +
                        " exceeds the model's n_positions " + std::to_string(n_positions) +
                        "; the model cannot attend that far, use a max of at most " +
                        std::to_string(n_positions));
      }
    }
  }
}

void check_plan(const Engine::Impl& e, const std::string& path) {
  const ir::Graph& g = e.graph;
  const EngineInfo& info = e.info;
  auto bad = [&](const std::string& msg) {
    return Error(ErrorCode::kParseError, "engine '" + path + "' holds an invalid plan: " + msg +
                                             "; rebuild the engine from the model");
  };
  for (const ir::Value& v : g.values) {
    if (!v.is_constant()) continue;
    ir::Value want;
    want.dtype = v.constant.dtype();
    want.shape = ir::SymShape::from(v.constant.shape());
    bool known = v.shape.rank_known;
    for (const ir::Dim& d : v.shape.dims) known = known && d.is_known();
    if (!known || !same_info(v, want))
      throw bad("constant '" + v.name + "' is declared " + info_text(v) + " but holds " +
                info_text(want));
  }
  std::set<int> inputs;
  for (int id : g.inputs) {
    const ir::Value& v = g.values[static_cast<size_t>(id)];
    if (!inputs.insert(id).second) throw bad("input '" + v.name + "' is listed twice");
    if (v.is_constant()) throw bad("input '" + v.name + "' is also a constant");
    if (!dtype_is_known(static_cast<int32_t>(v.dtype)) || !v.shape.rank_known)
      throw bad("input '" + v.name + "' has no dtype or rank");
  }
  if (g.outputs.empty()) throw bad("the plan has no outputs");
  if (info.profiles.empty()) throw bad("the engine has no optimization profile");
  for (size_t i = 0; i < info.profiles.size(); ++i) {
    try {
      check_profile(g, info.profiles[i], i, 0);
    } catch (const Error& err) {
      throw bad(err.what());
    }
  }

  // Every node, re-inferred from its inputs, must give what the plan stores for its outputs.
  ir::Graph fresh = g;
  for (size_t i = 0; i < fresh.values.size(); ++i) {
    ir::Value& v = fresh.values[i];
    if (v.is_constant() || inputs.count(static_cast<int>(i))) continue;
    v.dtype = DType::kUndefined;
    v.shape = ir::SymShape{};
    v.sym_value.reset();
  }
  for (const ir::Node& n : fresh.nodes) {
    if (!ir::can_infer(n)) {
      // A backend's own op (cpu PackedLinear, LayerNorm): that backend checks it.
      for (int id : n.outputs)
        if (id >= 0) fresh.values[static_cast<size_t>(id)] = g.values[static_cast<size_t>(id)];
      continue;
    }
    try {
      ir::infer_node(fresh, n);
    } catch (const Error& err) {
      throw bad(err.what());
    }
    for (int id : n.outputs) {
      if (id < 0) continue;
      const ir::Value &stored = g.values[static_cast<size_t>(id)],
                      &inferred = fresh.values[static_cast<size_t>(id)];
      if (!same_info(stored, inferred))
        throw bad(n.describe() + ": output '" + stored.name + "' is stored as " +
                  info_text(stored) + " but its inputs make it " + info_text(inferred));
    }
  }

  for (const auto& [name, limit] : info.index_limits) {
    int id = -1;
    for (int in : g.inputs)
      if (g.values[static_cast<size_t>(in)].name == name) id = in;
    if (id < 0) throw bad("index limit for '" + name + "', which is no input of the plan");
    DType dt = g.values[static_cast<size_t>(id)].dtype;
    if (dt != DType::kInt64 && dt != DType::kInt32)
      throw bad("index limit for '" + name + "', a " + dtype_name(dt) + " input");
    if (limit < 1)
      throw bad("index limit of '" + name + "' is " + std::to_string(limit) + ", expected >= 1");
    for (const ir::Node& n : g.nodes) {
      int64_t rows = indexed_rows(g, n, id);
      if (rows >= 0 && limit > rows)
        throw bad("index limit of '" + name + "' is " + std::to_string(limit) + " but " +
                  n.describe() + " reads a table of " + std::to_string(rows) + " rows");
    }
  }
}

}  // namespace gptrt

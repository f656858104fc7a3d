#include "builder/builder.h"

#include <algorithm>
#include <set>

#include "backends/backend.h"
#include "gptrt/error.h"
#include "ir/describe.h"
#include "ir/verifier.h"
#include "passes/passes.h"
#include "runtime/plan_check.h"

namespace gptrt::builder {
namespace {

// Ops through which an integer input still means "row index into a table".
bool is_index_preserving(const std::string& op) {
  return op == "Cast" || op == "Reshape" || op == "Unsqueeze" || op == "Squeeze" ||
         op == "Flatten" || op == "Identity";
}

}  // namespace

bool is_past_length(const ir::Value& v, size_t d) {
  // A past key or value: [batch, heads, past length, head size] of floats (with-past exports).
  bool floating =
      v.dtype == DType::kFloat32 || v.dtype == DType::kFloat16 || v.dtype == DType::kBFloat16;
  return floating && d == 2 && v.shape.rank_known && v.shape.dims.size() == 4 &&
         !v.shape.dims[2].is_known();
}

namespace {

// Records the tables that graph inputs index; `origin` names, per value, the graph input it is a
// pure re-indexing of ("" if none). Follows values into If branches.
void find_lookups(const ir::Graph& g, std::vector<std::string> origin, InputAnalysis& a,
                  std::vector<int64_t>& unindexed_tables) {
  for (const ir::Node& n : g.nodes) {
    if (is_index_preserving(n.op_type) && !n.inputs.empty() && n.inputs[0] >= 0 &&
        !n.outputs.empty() && n.outputs[0] >= 0) {
      origin[static_cast<size_t>(n.outputs[0])] = origin[static_cast<size_t>(n.inputs[0])];
    }
    for (const char* attr : {"then_branch", "else_branch"}) {
      const ir::Graph* b = n.op_type == "If" ? n.attr_graph(attr) : nullptr;
      if (!b || b->inputs.size() + 1 != n.inputs.size()) continue;
      std::vector<std::string> inner(b->values.size());
      for (size_t i = 0; i < b->inputs.size(); ++i)
        if (n.inputs[i + 1] >= 0)
          inner[static_cast<size_t>(b->inputs[i])] = origin[static_cast<size_t>(n.inputs[i + 1])];
      find_lookups(*b, inner, a, unindexed_tables);
    }
    if (n.op_type != "Gather" || n.inputs.size() < 2 || n.inputs[0] < 0 || n.inputs[1] < 0)
      continue;
    const ir::Value& table = g.values[static_cast<size_t>(n.inputs[0])];
    if (!table.is_constant() || table.constant.rank() != 2 || n.attr_int("axis", 0) != 0) continue;
    int64_t rows = table.constant.dim(0);
    if (rows < 1)
      throw Error(ErrorCode::kParseError,
                  n.describe() + " looks up rows of '" + table.name + "', which has shape " +
                      shape_str(table.constant.shape()) +
                      ": no rows, so no id is valid; the model file is corrupt or incomplete");
    const std::string& name = origin[static_cast<size_t>(n.inputs[1])];
    if (!name.empty()) {
      auto it = a.index_limits.find(name);
      a.index_limits[name] = it == a.index_limits.end() ? rows : std::min(it->second, rows);
      if (name.find("position") != std::string::npos) a.n_positions = rows;
    } else {
      unindexed_tables.push_back(rows);
    }
  }
}

}  // namespace

InputAnalysis analyze_inputs(const ir::Graph& g) {
  InputAnalysis a;
  // Which graph input (if any) each value is a pure re-indexing of.
  std::vector<std::string> origin(g.values.size());
  for (int id : g.inputs) {
    DType dt = g.values[static_cast<size_t>(id)].dtype;
    if (dt == DType::kInt64 || dt == DType::kInt32)
      origin[static_cast<size_t>(id)] = g.values[static_cast<size_t>(id)].name;
  }
  std::vector<int64_t> unindexed_tables;
  find_lookups(g, origin, a, unindexed_tables);
  if (a.n_positions == 0 && !unindexed_tables.empty()) a.n_positions = unindexed_tables.front();
  // An integer attention mask holds 1 (a token) or 0 (padding): other values are refused at run
  // time like ids outside the vocabulary, not read as 1.
  for (int id : g.inputs) {
    const ir::Value& v = g.values[static_cast<size_t>(id)];
    if ((v.dtype == DType::kInt64 || v.dtype == DType::kInt32) &&
        v.name.find("attention_mask") != std::string::npos && !a.index_limits.count(v.name))
      a.index_limits[v.name] = 2;
  }
  return a;
}

OptimizationProfile default_profile(const ir::Graph& g, int64_t max_batch, int64_t max_seq) {
  OptimizationProfile p;
  for (int id : g.inputs) {
    const ir::Value& v = g.values[static_cast<size_t>(id)];
    ShapeRange r;
    for (size_t d = 0; d < v.shape.dims.size(); ++d) {
      const ir::Dim& dim = v.shape.dims[d];
      if (dim.is_known()) {
        r.min.push_back(dim.value);
        r.opt.push_back(dim.value);
        r.max.push_back(dim.value);
      } else if (d == 0 && v.shape.dims.size() >= 2) {
        r.min.push_back(1);
        r.opt.push_back(1);
        r.max.push_back(max_batch);
      } else if (d == 1) {
        if (max_seq <= 0) {
          throw Error(
              ErrorCode::kInvalidArgument,
              "cannot tell the model's maximum sequence length (no position table found) for input "
              "'" +
                  v.name +
                  "'; state it with --maxSeqLen=N or give --minShapes/--optShapes/--maxShapes");
        }
        r.min.push_back(1);
        r.opt.push_back(std::min<int64_t>(max_seq, 128));
        r.max.push_back(max_seq);
      } else if (is_past_length(v, d)) {
        if (max_seq <= 0)
          throw Error(ErrorCode::kInvalidArgument,
                      "cannot tell the model's maximum sequence length (no position table found) "
                      "for the past length of input '" +
                          v.name +
                          "'; state it with --maxSeqLen=N or give "
                          "--minShapes/--optShapes/--maxShapes");
        r.min.push_back(0);  // the first step has no past
        r.opt.push_back(0);  // opt shapes stay consistent: mask length = past + sequence
        r.max.push_back(max_seq);
      } else {
        throw Error(ErrorCode::kInvalidArgument,
                    "input '" + v.name + "' dimension " + std::to_string(d) + " (" + dim.symbol +
                        ") is dynamic and is neither batch nor sequence; give its range with "
                        "--minShapes/--optShapes/--maxShapes");
      }
    }
    p.inputs.emplace_back(v.name, r);
  }
  return p;
}

// Profiles and index limits keep only the inputs the plan still has (a with-past export built
// as the plain decoder drops its past inputs and use-cache flag).
void prune_dropped_inputs(const ir::Graph& g, EngineInfo& info) {
  auto kept = [&](const std::string& name) {
    int id = g.find(name);
    return id >= 0 && std::find(g.inputs.begin(), g.inputs.end(), id) != g.inputs.end();
  };
  for (OptimizationProfile& p : info.profiles) {
    std::vector<std::pair<std::string, ShapeRange>> inputs;
    for (const auto& [name, r] : p.inputs)
      if (kept(name)) inputs.emplace_back(name, r);
    p.inputs = inputs;
  }
  for (auto it = info.index_limits.begin(); it != info.index_limits.end();)
    it = kept(it->first) ? std::next(it) : info.index_limits.erase(it);
}

passes::DecoderInfo fuse(ir::Graph& g, const std::function<void(const std::string&)>& notice,
                         bool keep_past) {
  // An FP16/BF16 export is recognised in float32 (widened exactly), a merged decoder in its
  // with-cache branch and an ONNX Runtime-optimized file in ONNX ops, each checked against the
  // (widened) graph before; the graph is restored if the decoder is not found.
  DType half = DType::kUndefined;
  for (const ir::Value& v : g.values)
    if (v.is_constant() && (v.dtype == DType::kFloat16 || v.dtype == DType::kBFloat16))
      half = v.dtype;
  const bool has_if = std::any_of(g.nodes.begin(), g.nodes.end(),
                                  [](const ir::Node& n) { return n.op_type == "If"; });
  const bool has_contrib = std::any_of(g.nodes.begin(), g.nodes.end(), [](const ir::Node& n) {
    return n.domain == ir::kContribDomain;
  });
  ir::Graph before, check_against;
  if (half != DType::kUndefined || has_if || has_contrib) before = g;
  const bool widened = half != DType::kUndefined && passes::widen_16bit_floats(g) > 0;
  if (has_if || has_contrib) check_against = g;
  const bool inlined = has_if && !passes::inline_cache_branch(g).empty();
  if (inlined) passes::fold_constants(g);  // the branch's own constant arithmetic (Identity...)
  const int contrib = has_contrib ? passes::decompose_contrib_ops(g) : 0;
  const bool rewritten = inlined || contrib > 0;
  int norms = passes::fuse_layer_norm(g);
  int linears = passes::fuse_linear(g);
  passes::eliminate_dead_code(g);
  passes::DecoderInfo decoder =
      passes::fuse_decoder(g, keep_past, rewritten ? &check_against : nullptr);
  if (decoder.recognised && widened) decoder.widened_from = dtype_name(half);
  if (decoder.recognised) decoder.contrib_ops = contrib;
  if (!decoder.recognised && (widened || rewritten)) {
    g = std::move(before);
    norms = linears = 0;
  }
  passes::eliminate_dead_code(g);
  int prologues = passes::mark_layer_norm_prologues(g);
  int projections = passes::mark_attention_projections(g);
  if (notice) {
    notice("passes: fused " + std::to_string(norms) + " decomposed LayerNorms, " +
           std::to_string(linears) + " linear layers; marked " + std::to_string(prologues) +
           " linear layers that may normalise their rows, " + std::to_string(projections) +
           " QKV projections that may run with their attention");
    notice(decoder.recognised ? decoder.summary()
                              : decoder.summary() +
                                    "; the graph runs op by op on the generic plan (correct, "
                                    "slower)");
  }
  return decoder;
}

std::shared_ptr<Engine::Impl> build(const Network::Impl& network, const BuildConfig& config) {
  auto notice = [&](const std::string& s) {
    if (config.notice) config.notice(s);
  };
  auto e = std::make_shared<Engine::Impl>();
  e->files = network.files;
  e->graph = network.graph;
  ir::Graph& g = e->graph;
  EngineInfo& info = e->info;

  const backends::Backend& backend = backends::get(config.backend);
  if (std::string why = backend.missing(); !why.empty()) throw Error(ErrorCode::kUnsupported, why);
  info.backend = config.backend;
  info.format_version = kEngineFormatVersion;
  info.gptrt_version = version();
  if (config.int8_group != 0 && config.precision != Precision::kInt8)
    throw Error(ErrorCode::kInvalidArgument,
                "--int8Group=" + std::to_string(config.int8_group) +
                    " sets the K values an INT8 scale covers, and this engine is not INT8; add "
                    "--int8 or drop --int8Group");
  if (config.int8_group < 0)
    throw Error(ErrorCode::kInvalidArgument,
                "--int8Group is " + std::to_string(config.int8_group) +
                    "; it takes 0 (a scale per output column, the default) or a multiple of 16 "
                    "that divides every layer's K");
  const backends::BuildRequest request{config.precision, config.cpu_isa, config.int8_group};
  backend.choose_target(request, info, notice);

  InputAnalysis analysis = analyze_inputs(g);
  info.index_limits = analysis.index_limits;
  int64_t max_seq =
      config.default_max_seq_len > 0 ? config.default_max_seq_len : analysis.n_positions;
  if (config.profiles.empty()) {
    info.profiles.push_back(default_profile(g, config.default_max_batch, max_seq));
  } else {
    info.profiles = config.profiles;
    // Keep the network's input order in every profile.
    for (OptimizationProfile& p : info.profiles) {
      OptimizationProfile ordered;
      for (int id : g.inputs) {
        const std::string& name = g.values[static_cast<size_t>(id)].name;
        if (const ShapeRange* r = p.find(name)) ordered.inputs.emplace_back(name, *r);
      }
      for (const auto& [name, r] : p.inputs) {
        if (!ordered.find(name)) ordered.inputs.emplace_back(name, r);
      }
      p = ordered;
    }
  }
  for (size_t i = 0; i < info.profiles.size(); ++i)
    check_profile(g, info.profiles[i], i, analysis.n_positions);

  int folded = passes::fold_constants(g);
  if (passes::inline_constant_ifs(g) > 0) folded += passes::fold_constants(g);
  int removed = passes::eliminate_dead_code(g);
  notice("passes: folded " + std::to_string(folded) + " nodes, removed " + std::to_string(removed) +
         " dead nodes");
  // One profile of one shape: shapes are concrete, so shape arithmetic collapses entirely. For
  // a backend that runs the fused decoder the decoder is recognised first (fixing shapes can fold
  // away what the matcher looks for, such as the position lookup); the shapes are fixed only if
  // it was not.
  std::map<std::string, Shape> fixed;
  bool concrete = info.profiles.size() == 1;
  for (const auto& [name, r] : info.profiles[0].inputs) {
    concrete = concrete && r.min == r.max;
    fixed[name] = r.min;
  }
  auto specialize = [&] {
    if (!concrete || passes::specialize_shapes(g, fixed) == 0) return false;
    int f2 = passes::fold_constants(g);
    int r2 = passes::eliminate_dead_code(g);
    notice("passes: fixed shapes, folded " + std::to_string(f2) + " more nodes, removed " +
           std::to_string(r2));
    return true;
  };
  std::string blocker;
  if (backend.wants_fused_plan()) {
    ir::Graph unfused = concrete ? g : ir::Graph{};
    passes::DecoderInfo decoder = fuse(g, notice, config.keep_past);
    if (!decoder.recognised && concrete) {
      g = std::move(unfused);
      if (specialize()) decoder = fuse(g, notice, config.keep_past);
    }
    info.model.notices.push_back(decoder.summary());
    blocker = decoder.recognised ? "" : decoder.blocker;
    if (!config.keep_past && !decoder.recognised)
      throw Error(ErrorCode::kUnsupported,
                  "the plain decoder (--noPast, and what generation builds) needs the GPT-2 "
                  "decoder recognised, and it was not: " +
                      decoder.blocker +
                      "; `gptrt run`/`exec` without --noPast run the graph as it is");
    if (!config.keep_past) prune_dropped_inputs(g, info);
  } else {
    if (!config.keep_past)
      throw Error(ErrorCode::kUnsupported,
                  std::string("--noPast needs the fused decoder, which the ") + backend.name() +
                      " backend does not build (it runs the graph as it is); use --backend=cpu "
                      "or --backend=cuda");
    specialize();
  }
  backend.lower(g, info, request, blocker, notice);
  passes::eliminate_dead_code(g);
  ir::verify(g);
  for (const ir::Node& n : g.nodes) {
    if (!backend.supports(n, info.precision)) {
      throw Error(ErrorCode::kUnsupported, n.describe() + " (opset " + std::to_string(g.opset) +
                                               "): no kernel on the " + backend.name() +
                                               " backend");
    }
  }
  ModelInfo model = ir::describe_graph(g);
  std::vector<std::string> notices = ir::describe_graph(network.graph).notices;
  notices.insert(notices.end(), info.model.notices.begin(), info.model.notices.end());
  model.notices = notices;
  info.model = model;
  return e;
}

}  // namespace gptrt::builder

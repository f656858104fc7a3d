// `gptrt inspect`: what a model or engine file holds.
#include <cstdio>
#include <cstring>
#include <set>

#include "common.h"
#include "gptrt/error.h"
#include "ir/graph.h"
#include "ir/shape_inference.h"
#include "platform/platform.h"
#include "runtime/engine_impl.h"

namespace gptrt::cli {
namespace {

std::string desc_text(const TensorDesc& d) {
  std::string s = d.name + ": " + dtype_name(d.dtype) + " [";
  for (size_t i = 0; i < d.dims.size(); ++i)
    s += (i ? ", " : "") + (d.dims[i] >= 0 ? std::to_string(d.dims[i]) : d.dim_names[i]);
  return s + "]";
}

// How an INT8 engine's weights share scales: "a scale per output channel", or "... and 32
// weights along K" (cpu plans' scales [panels, groups, 16], cuda plans' [N, groups]).
std::string int8_scales(const Engine& engine) {
  const ir::Graph& g = engine.impl().graph;
  std::set<int64_t> sizes;
  for (const ir::Node& n : g.nodes) {
    if (n.inputs.size() < 5 || n.inputs[4] < 0 || n.inputs[1] < 0) continue;
    const Tensor& s = g.values[static_cast<size_t>(n.inputs[4])].constant;
    const Tensor& w = g.values[static_cast<size_t>(n.inputs[1])].constant;
    const int64_t k = n.op_type == "PackedLinear" ? n.attr_int("K", 0)
                      : w.rank() == 2             ? w.dim(1)
                                                  : 0;
    const int64_t groups = s.rank() >= 2 ? s.dim(1) : 1;
    sizes.insert(groups > 1 ? k / groups : 0);
  }
  std::string text = "a scale per output channel";
  for (int64_t size : sizes)
    if (size > 0) text += " and " + std::to_string(size) + " weights along K";
  return text;
}

void print_model(const ModelInfo& m) {
  std::printf("producer: %s %s, ONNX IR version %lld, opset %lld\n", m.producer.c_str(),
              m.producer_version.c_str(), static_cast<long long>(m.ir_version),
              static_cast<long long>(m.opset));
  std::printf("inputs:\n");
  for (const TensorDesc& d : m.inputs) std::printf("  %s\n", desc_text(d).c_str());
  std::printf("outputs:\n");
  for (const TensorDesc& d : m.outputs) std::printf("  %s\n", desc_text(d).c_str());
  std::printf(
      "parameters: %lld (%.2f M), constants: %lld bytes (%.1f MB)\n",
      static_cast<long long>(m.parameter_count), static_cast<double>(m.parameter_count) / 1e6,
      static_cast<long long>(m.parameter_bytes), static_cast<double>(m.parameter_bytes) / 1e6);
  std::printf("nodes: %lld\n", static_cast<long long>(m.node_count));
  std::printf("op counts:\n");
  for (const auto& [op, n] : m.op_counts)
    std::printf("  %-20s %lld\n", op.c_str(), static_cast<long long>(n));
  for (const std::string& n : m.notices) std::printf("note: %s\n", n.c_str());
}

bool is_engine_file(const std::string& path) {
  auto f = platform::MappedFile::open(path);
  return f->size() >= 8 && std::memcmp(f->data(), "GPTRTENG", 8) == 0;
}

}  // namespace

int cmd_inspect(const std::vector<std::string>& argv) {
  std::vector<FlagSpec> specs = {
      {"onnx", true, "ONNX model to describe"},
      {"hf", true, "Hugging Face GPT-2 folder to describe"},
      {"loadEngine", true, "engine file to describe"},
      {"ops", false, "list the ops gptrt can import"},
      {"fused", false,
       "print the graph after the fusion passes and whether the GPT-2 decoder was recognised"},
      {"help", false, "show this help"},
  };
  Args args = Args::parse(specs, argv, "inspect");
  if (args.has("help")) {
    print_help(
        "usage: gptrt inspect FILE | --onnx=MODEL.onnx | --hf=DIR | --loadEngine=ENGINE | --ops\n"
        "       gptrt inspect --fused (--onnx=MODEL.onnx | --hf=DIR)",
        specs);
    return 0;
  }
  if (args.has("ops")) {
    std::printf("ops gptrt imports (default ONNX domain, opsets %lld-%lld):\n",
                static_cast<long long>(ir::kMinOpset), static_cast<long long>(ir::kMaxOpset));
    for (const std::string& op : ir::supported_ops()) std::printf("  %s\n", op.c_str());
    std::printf(
        "ONNX Runtime contrib ops (domain com.microsoft, as its transformer optimizer "
        "writes them):\n");
    for (const std::string& op : ir::supported_contrib_ops())
      std::printf("  com.microsoft.%s\n", op.c_str());
    return 0;
  }
  if (args.has("fused")) {
    if (args.has("loadEngine"))
      throw Error(ErrorCode::kInvalidArgument,
                  "gptrt inspect --fused describes a model (--onnx or --hf); an engine's plan is "
                  "already fused: gptrt inspect --loadEngine=ENGINE shows its ops");
    std::string src = args.has("hf") ? args.get("hf") : args.get("onnx");
    if (src.empty() && !args.positional().empty()) src = args.positional().front();
    if (src.empty())
      throw Error(ErrorCode::kInvalidArgument,
                  "gptrt inspect --fused: give --onnx=MODEL.onnx or --hf=DIR");
    Network net = args.has("hf") ? Network::from_hf(src) : Network::from_onnx(src);
    FusedGraph f = net.fused();
    std::printf("model: %s\n%s\nfused graph (%zu nodes):\n", src.c_str(), f.decoder.c_str(),
                f.nodes.size());
    for (const std::string& line : f.nodes) std::printf("  %s\n", line.c_str());
    std::printf("op counts:\n");
    for (const auto& [op, n] : f.op_counts)
      std::printf("  %-20s %lld\n", op.c_str(), static_cast<long long>(n));
    return 0;
  }
  if (args.has("hf")) {
    Network net = Network::from_hf(args.get("hf"));
    std::printf("model: %s (Hugging Face folder)\n", args.get("hf").c_str());
    print_model(net.info());
    return 0;
  }
  std::string path = args.get("onnx", args.get("loadEngine"));
  if (path.empty() && !args.positional().empty()) path = args.positional().front();
  if (path.empty())
    throw Error(ErrorCode::kInvalidArgument,
                "gptrt inspect: give a model or engine file (gptrt inspect FILE)");
  if (args.has("loadEngine") || (!args.has("onnx") && is_engine_file(path))) {
    auto engine = Engine::load(path);
    const EngineInfo& info = engine->info();
    std::printf("engine: %s\n", path.c_str());
    std::printf("format version %u, written by gptrt %s\n", info.format_version,
                info.gptrt_version.c_str());
    std::printf("backend: %s, target: %s, precision: %s\n", backend_name(info.backend),
                info.target.c_str(), precision_name(info.precision));
    if (info.precision == Precision::kInt8)
      std::printf("INT8 weights: %s\n", int8_scales(*engine).c_str());
    for (size_t p = 0; p < info.profiles.size(); ++p) {
      std::printf("profile %zu:\n", p);
      for (const auto& [name, r] : info.profiles[p].inputs) {
        std::printf("  %s: min %s opt %s max %s\n", name.c_str(), shape_str(r.min).c_str(),
                    shape_str(r.opt).c_str(), shape_str(r.max).c_str());
      }
    }
    for (const auto& [name, limit] : info.index_limits)
      std::printf("value range: %s in [0, %lld)\n", name.c_str(), static_cast<long long>(limit));
    std::printf("model (as planned, after passes) from %s:\n", info.model.source.c_str());
    print_model(info.model);
    return 0;
  }
  Network net = Network::from_onnx(path);
  std::printf("model: %s\n", path.c_str());
  print_model(net.info());
  return 0;
}

}  // namespace gptrt::cli

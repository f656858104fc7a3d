// The Network's public API (import, describe, the fused view) and Engine::build: the build-time
// half of engine.h.
#include "builder/builder.h"
#include "hf/importer.h"
#include "ir/describe.h"
#include "onnx/importer.h"
#include "onnx/writer.h"
#include "passes/passes.h"

namespace gptrt {
namespace {

Network network_from(onnx::ImportedModel m) {
  auto impl = std::make_shared<Network::Impl>();
  impl->graph = std::move(m.graph);
  impl->files = std::move(m.files);
  Network n;
  n.impl = impl;
  return n;
}

}  // namespace

Network Network::from_onnx(const std::string& path) {
  return network_from(onnx::import_onnx(path));
}

Network Network::from_hf(const std::string& dir) {
  return network_from(hf::import_folder(dir));
}

void Network::save_onnx(const std::string& path) const {
  onnx::write_model(impl->graph, path);
}

ModelInfo Network::info() const {
  return ir::describe_graph(impl->graph);
}

std::shared_ptr<const Engine> Engine::build(const Network& network, const BuildConfig& config) {
  return std::make_shared<Engine>(builder::build(*network.impl, config));
}

FusedGraph Network::fused() const {
  ir::Graph g = impl->graph;
  passes::fold_constants(g);
  passes::eliminate_dead_code(g);
  passes::DecoderInfo d = builder::fuse(g, nullptr);
  FusedGraph f;
  f.decoder_recognised = d.recognised;
  f.decoder = d.recognised ? d.summary()
                           : d.summary() +
                                 "; the graph runs op by op on the generic plan "
                                 "(correct, slower)";
  if (d.form != "plain" || !d.recognised) {
    // With-past and merged exports: what generation (and --noPast) builds from them.
    ir::Graph plain = impl->graph;
    passes::fold_constants(plain);
    passes::eliminate_dead_code(plain);
    passes::DecoderInfo p = builder::fuse(plain, nullptr, false);
    if (p.form != "plain") f.decoder += "\nfor generation (--noPast): " + p.summary();
  }
  for (const ir::Node& n : g.nodes) {
    f.nodes.push_back(ir::describe_node(g, n));
    ++f.op_counts[(n.domain.empty() ? "" : n.domain + ".") + n.op_type];
  }
  return f;
}

}  // namespace gptrt

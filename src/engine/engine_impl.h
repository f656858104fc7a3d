// What Network and Engine hold behind their public handles.
#pragma once

#include <memory>
#include <vector>

#include "gptrt/engine.h"
#include "ir/graph.h"
#include "platform/platform.h"

namespace gptrt {

struct Network::Impl {
  ir::Graph graph;
  std::vector<std::shared_ptr<const platform::MappedFile>> files;  // keep constant views alive
};

struct Engine::Impl {
  EngineInfo info;
  ir::Graph graph;  // the plan: optimized graph, constants are views or owned tensors
  std::vector<std::shared_ptr<const platform::MappedFile>> files;
};

/// Inputs, outputs, op counts and parameter sizes of a graph.
ModelInfo describe_graph(const ir::Graph& graph);
/// One line for a node: "out [shape] = domain.Op(inputs) attrs" (constants as name<shape>).
std::string describe_node(const ir::Graph& graph, const ir::Node& node);

/// Current engine file format version.
constexpr uint32_t kEngineFormatVersion = 1;

/// Serializes an engine (header, metadata, 256-byte aligned weights, checksum).
std::vector<uint8_t> write_engine_file(const Engine::Impl& engine);
/// Parses a mapped engine file; weights stay views into `file`.
std::shared_ptr<Engine::Impl> read_engine_file(std::shared_ptr<const platform::MappedFile> file);

}  // namespace gptrt

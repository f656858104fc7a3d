// What an Engine holds behind its public handle, and its file format.
#pragma once

#include <memory>
#include <vector>

#include "gptrt/engine.h"
#include "ir/graph.h"
#include "platform/platform.h"

namespace gptrt {

struct Engine::Impl {
  EngineInfo info;
  ir::Graph graph;  // the plan: optimized graph, constants are views or owned tensors
  std::vector<std::shared_ptr<const platform::MappedFile>> files;
};

/// Current engine file format version.
constexpr uint32_t kEngineFormatVersion = 1;

/// Serializes an engine (header, metadata, 256-byte aligned weights, checksum).
std::vector<uint8_t> write_engine_file(const Engine::Impl& engine);
/// Parses a mapped engine file; weights stay views into `file`.
std::shared_ptr<Engine::Impl> read_engine_file(std::shared_ptr<const platform::MappedFile> file);

}  // namespace gptrt

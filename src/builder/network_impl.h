// What a Network holds behind its public handle.
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

}  // namespace gptrt

#include "ir/verifier.h"

#include <vector>

#include "gptrt/error.h"

namespace gptrt::ir {

void verify(const Graph& g) {
  std::vector<char> defined(g.values.size(), 0);
  auto fail = [&](const std::string& msg) {
    throw Error(ErrorCode::kParseError, "graph of '" + g.source + "' is invalid: " + msg);
  };
  std::vector<char> produced(g.values.size(), 0);
  for (const Node& n : g.nodes) {
    for (int id : n.outputs) {
      if (id >= 0 && static_cast<size_t>(id) < g.values.size())
        produced[static_cast<size_t>(id)] = 1;
    }
  }
  for (size_t i = 0; i < g.values.size(); ++i) {
    if (g.values[i].is_constant() && !produced[i]) defined[i] = 1;
  }
  for (int id : g.inputs) {
    if (id < 0 || static_cast<size_t>(id) >= g.values.size()) fail("graph input id out of range");
    defined[static_cast<size_t>(id)] = 1;
  }
  for (const Node& n : g.nodes) {
    for (int id : n.inputs) {
      if (id < 0) continue;
      if (static_cast<size_t>(id) >= g.values.size())
        fail(n.describe() + " reads a value id out of range");
      if (!defined[static_cast<size_t>(id)])
        fail(n.describe() + " reads '" + g.values[static_cast<size_t>(id)].name +
             "' before it is defined");
      if (g.values[static_cast<size_t>(id)].dtype == DType::kUndefined)
        fail(n.describe() + " reads '" + g.values[static_cast<size_t>(id)].name +
             "', whose dtype is unknown");
    }
    for (int id : n.outputs) {
      if (id < 0) continue;
      if (static_cast<size_t>(id) >= g.values.size())
        fail(n.describe() + " writes a value id out of range");
      if (defined[static_cast<size_t>(id)])
        fail("'" + g.values[static_cast<size_t>(id)].name + "' is defined twice (second time by " +
             n.describe() + ")");
      defined[static_cast<size_t>(id)] = 1;
    }
  }
  for (int id : g.outputs) {
    if (id < 0 || static_cast<size_t>(id) >= g.values.size() || !defined[static_cast<size_t>(id)])
      fail("a graph output is never defined");
  }
}

}  // namespace gptrt::ir

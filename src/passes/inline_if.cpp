// If nodes become the nodes of one branch: the branch a constant condition picks, and the
// with-cache branch of a merged decoder (optimum's decoder_model_merged.onnx), whose past inputs
// are then gated by the condition (gptrt.CacheGate: an empty past when the cache is not used).
#include <algorithm>
#include <string>

#include "ir/shape_inference.h"
#include "passes/passes.h"

namespace gptrt::passes {
namespace {

std::string unique_name(const ir::Graph& g, const std::string& base) {
  std::string name = base;
  for (int k = 1; g.find(name) >= 0; ++k) name = base + "." + std::to_string(k);
  return name;
}

// The nodes of `branch` added to `out` in place of If node `n`; `inputs` are the outer values
// for the branch's inputs. The branch's outputs become the If's outputs.
void splice_branch(const ir::Graph& g, const ir::Node& n, const ir::Graph& branch,
                   const std::vector<int>& inputs, ir::Graph& out_graph,
                   std::vector<ir::Node>& out) {
  std::vector<int> map(branch.values.size(), -1);
  for (size_t i = 0; i < branch.inputs.size(); ++i)
    map[static_cast<size_t>(branch.inputs[i])] = inputs[i];
  // Values the branch's nodes write that are branch outputs take the If's output ids.
  std::vector<char> produced(branch.values.size(), 0);
  for (const ir::Node& b : branch.nodes)
    for (int id : b.outputs)
      if (id >= 0) produced[static_cast<size_t>(id)] = 1;
  std::vector<std::pair<int, int>> copies;  // (branch value, If output) needing an Identity
  for (size_t k = 0; k < branch.outputs.size(); ++k) {
    int bid = branch.outputs[k], oid = n.outputs[k];
    if (oid < 0) continue;
    if (produced[static_cast<size_t>(bid)] && map[static_cast<size_t>(bid)] < 0)
      map[static_cast<size_t>(bid)] = oid;
    else
      copies.push_back({bid, oid});
  }
  auto mapped = [&](int id) {
    if (id < 0) return -1;
    int& m = map[static_cast<size_t>(id)];
    if (m >= 0) return m;
    ir::Value v = branch.values[static_cast<size_t>(id)];
    v.name = unique_name(out_graph, n.name + "/" + v.name);
    m = out_graph.add_value(std::move(v));
    return m;
  };
  for (const ir::Node& b : branch.nodes) {
    ir::Node c = b;
    c.name = n.name + "/" + b.name;
    for (int& id : c.inputs) id = mapped(id);
    for (int& id : c.outputs) id = mapped(id);
    out.push_back(std::move(c));
  }
  for (const auto& [bid, oid] : copies) {
    ir::Node id_node;
    id_node.name = n.name + "/output." + g.values[static_cast<size_t>(oid)].name;
    id_node.op_type = "Identity";
    id_node.inputs = {mapped(bid)};
    id_node.outputs = {oid};
    out.push_back(std::move(id_node));
  }
}

// Replaces If nodes for which `pick` returns a branch attribute name ("" to keep the node).
template <typename Pick, typename Inputs>
int inline_ifs(ir::Graph& g, Pick pick, Inputs branch_inputs) {
  int changed = 0;
  std::vector<ir::Node> nodes;
  std::vector<ir::Node> old = std::move(g.nodes);
  g.nodes.clear();
  for (ir::Node& n : old) {
    std::string attr = n.domain.empty() && n.op_type == "If" ? pick(n) : "";
    const ir::Graph* b = attr.empty() ? nullptr : n.attr_graph(attr);
    if (!b || b->inputs.size() + 1 != n.inputs.size()) {
      nodes.push_back(std::move(n));
      continue;
    }
    std::vector<int> inputs = branch_inputs(n, nodes);
    splice_branch(g, n, *b, inputs, g, nodes);
    ++changed;
  }
  g.nodes = std::move(nodes);
  if (changed) ir::infer_shapes(g);
  return changed;
}

}  // namespace

int inline_constant_ifs(ir::Graph& g) {
  return inline_ifs(
      g,
      [&](const ir::Node& n) -> std::string {
        const ir::Value* c = g.input(n, 0);
        if (!c || !c->is_constant() || c->constant.numel() != 1) return "";
        return static_cast<const uint8_t*>(c->constant.raw())[0] ? "then_branch" : "else_branch";
      },
      [](const ir::Node& n, std::vector<ir::Node>&) {
        return std::vector<int>(n.inputs.begin() + 1, n.inputs.end());
      });
}

std::string inline_cache_branch(ir::Graph& g) {
  std::string flag;
  auto is_flag = [&](int id) {
    if (id < 0) return false;
    const ir::Value& v = g.values[static_cast<size_t>(id)];
    bool input = std::find(g.inputs.begin(), g.inputs.end(), id) != g.inputs.end();
    return input && v.dtype == DType::kBool && v.shape.fully_known() &&
           v.shape.concrete() == Shape{1};
  };
  inline_ifs(
      g,
      [&](const ir::Node& n) -> std::string {
        if (!flag.empty() || !is_flag(n.inputs[0])) return "";
        flag = g.values[static_cast<size_t>(n.inputs[0])].name;
        return "then_branch";
      },
      [&](const ir::Node& n, std::vector<ir::Node>& nodes) {
        // Past keys and values (graph inputs of rank 4) reach the branch through a gate.
        std::vector<int> inputs;
        for (size_t i = 1; i < n.inputs.size(); ++i) {
          int id = n.inputs[i];
          const ir::Value& v = g.values[static_cast<size_t>(id)];
          bool past = std::find(g.inputs.begin(), g.inputs.end(), id) != g.inputs.end() &&
                      v.shape.rank_known && v.shape.dims.size() == 4 &&
                      (v.dtype == DType::kFloat32 || v.dtype == DType::kFloat16);
          if (!past) {
            inputs.push_back(id);
            continue;
          }
          ir::Value gated;
          gated.name = unique_name(g, v.name + ".gated");
          int gid = g.add_value(std::move(gated));
          ir::Node gate;
          gate.name = n.name + "/gate." + v.name;
          gate.op_type = "CacheGate";
          gate.domain = kFusedDomain;
          gate.inputs = {id, n.inputs[0]};
          gate.outputs = {gid};
          nodes.push_back(std::move(gate));
          inputs.push_back(gid);
        }
        return inputs;
      });
  return flag;
}

}  // namespace gptrt::passes

// Finds the parts of a lowered GPT-2 decoder plan that a KV-cache decoder treats specially.
#include "backends/backend.h"
#include "gptrt/error.h"

namespace gptrt::backends {
namespace {

[[noreturn]] void not_a_decoder(const std::string& why) {
  throw Error(ErrorCode::kUnsupported,
              "generation needs an engine whose GPT-2 decoder was recognised (cpu or cuda "
              "backend): " +
                  why + " (gptrt inspect --fused shows what the passes found)");
}

}  // namespace

DecoderPlan find_decoder_plan(const ir::Graph& g, const std::string& head_op,
                              const std::function<bool(const ir::Node&)>& runs) {
  DecoderPlan p;
  size_t gates = 0;  // a merged decoder's CacheGates come first; a KV-cache decoder skips them
  while (gates < g.nodes.size() && g.nodes[gates].domain == ir::kFusedDomain &&
         g.nodes[gates].op_type == "CacheGate")
    ++gates;
  for (size_t i = gates; i < g.nodes.size(); ++i) {
    const ir::Node& n = g.nodes[i];
    if (!runs(n)) not_a_decoder("its plan runs " + n.describe() + " op by op");
    if (n.op_type == "Embedding") {
      if (p.embed >= 0) not_a_decoder("the plan has two embedding lookups");
      if (n.inputs.size() < 4 || n.inputs[3] < 0)
        not_a_decoder("its embedding " + n.describe() + " has no position table");
      const ir::Value& wpe = g.values[static_cast<size_t>(n.inputs[3])];
      if (!wpe.is_constant() || wpe.constant.rank() != 2)
        not_a_decoder("its position table is not a constant matrix");
      p.embed = static_cast<int>(i);
      p.n_positions = wpe.constant.dim(0);
      p.hidden = wpe.constant.dim(1);
    }
    if (n.op_type == "Attention") ++p.layers;
  }
  if (g.nodes.empty() || g.outputs.empty())
    not_a_decoder("the plan is not embedding, decoder layers and an LM head");
  const ir::Node& last = g.nodes.back();
  if (p.embed != static_cast<int>(gates) || p.layers == 0 || last.op_type != head_op ||
      last.outputs.empty() || last.outputs[0] != g.outputs[0])
    not_a_decoder("the plan is not embedding, decoder layers and an LM head");
  p.head = static_cast<int>(g.nodes.size()) - 1;
  const ir::SymShape& out = g.values[static_cast<size_t>(g.outputs[0])].shape;
  if (out.dims.empty() || !out.dims.back().is_known())
    not_a_decoder("the LM head's vocabulary size is not fixed");
  p.vocab = out.dims.back().value;
  return p;
}

}  // namespace gptrt::backends

// Compiles a Network into an Engine: profiles, passes, value-range analysis, target choice.
#pragma once

#include <memory>

#include <functional>
#include <string>

#include "builder/network_impl.h"
#include "passes/passes.h"
#include "runtime/engine_impl.h"

namespace gptrt::builder {

/// What the builder learns about a GPT-2 style graph's inputs.
struct InputAnalysis {
  std::map<std::string, int64_t> index_limits;  // input -> rows of the table it indexes
  int64_t n_positions = 0;                      // rows of the position table, 0 if unknown
};

/// Finds the embedding tables the graph inputs index (vocab size, n_positions).
InputAnalysis analyze_inputs(const ir::Graph& graph);

/// Whether dimension `d` of input `v` is a past length: dim 2 of a dynamic
/// [batch, heads, past, head size] float input (a with-past export's past keys and values).
bool is_past_length(const ir::Value& v, size_t d);

/// The default profile: batch 1..max_batch, seq 1..max_seq for every [batch, seq] input, past
/// length 0..max_seq for every past key and value.
OptimizationProfile default_profile(const ir::Graph& graph, int64_t max_batch, int64_t max_seq);

/// Checks a profile against the graph's inputs; throws gptrt::Error saying what to fix.
void validate_profile(const ir::Graph& graph, const OptimizationProfile& profile, size_t index,
                      int64_t n_positions);

/// The fusion passes on a folded graph: LayerNorm and Linear fusion, then the GPT-2 decoder
/// (passes::fuse_decoder; a merged decoder's If inlined first, and kept if the decoder is not
/// recognised). A graph that is not recognised keeps its fused LayerNorms and linear layers and
/// runs op by op; `notice` gets one line saying what blocked the rest. Without `keep_past`, a
/// with-past or merged export becomes the plain decoder.
passes::DecoderInfo fuse(ir::Graph& graph, const std::function<void(const std::string&)>& notice,
                         bool keep_past = true);

/// Runs the whole build.
std::shared_ptr<Engine::Impl> build(const Network::Impl& network, const BuildConfig& config);

}  // namespace gptrt::builder

// Graph passes, one per file. Each returns how many nodes it changed or removed.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "ir/graph.h"

namespace gptrt::passes {

using ir::kFusedDomain;

/// Evaluates every node whose result is known at build time (constant inputs, shapes of
/// static dims, shape arithmetic that collapsed) and turns its outputs into constants.
int fold_constants(ir::Graph& graph);

/// Removes nodes whose outputs nobody reads and values nobody uses; renumbers values.
int eliminate_dead_code(ir::Graph& graph);

/// Replaces symbolic input dims by concrete sizes (a profile with min == max) and re-infers
/// shapes, so shape subgraphs fold away. Returns how many input dims it fixed.
int specialize_shapes(ir::Graph& graph, const std::map<std::string, Shape>& input_shapes);

/// Replaces every If whose condition is a constant by the nodes of the branch it picks.
int inline_constant_ifs(ir::Graph& graph);

/// A merged decoder (an If on a bool[1] graph input such as optimum's use_cache_branch) becomes
/// its with-cache branch, each past key and value (rank-4 graph inputs) passed through
/// gptrt.CacheGate(past, flag): the past itself when the flag is true, an empty past (length 0)
/// when false. Equal to the If where the other branch computes the same without a past, which is
/// what a merged export means and what fuse_decoder checks. Returns the flag's name, or "" when
/// the graph has no such If (the graph is then unchanged).
std::string inline_cache_branch(ir::Graph& graph);

/// A graph with float16/bfloat16 constants and casts (an FP16 export) rewritten in float32: its
/// constants widened exactly, casts to 16-bit floats made casts to float32, shapes re-inferred;
/// outputs become float32. Graphs with a 16-bit float input are left as they are (the inputs are
/// the engine's contract). Returns how many constants and casts changed.
int widen_16bit_floats(ir::Graph& graph);

/// ONNX Runtime's contrib ops in an optimized GPT-2 file (SkipLayerNormalization, FastGelu,
/// BiasGelu, Gelu) rewritten as the ONNX ops they stand for (Add, LayerNormalization, Gelu), so
/// that the decoder is recognised as in the plain export. Returns how many ops it rewrote.
int decompose_contrib_ops(ir::Graph& graph);

/// Decomposed LayerNorm (ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div, then Mul gamma, Add beta)
/// becomes LayerNormalization over the last axis. Run dead-code elimination afterwards.
int fuse_layer_norm(ir::Graph& graph);

/// MatMul by a constant matrix (+ constant bias Add) and Gemm become gptrt.Linear. Run
/// dead-code elimination afterwards.
int fuse_linear(ir::Graph& graph);

/// What fuse_decoder found.
struct DecoderInfo {
  bool recognised = false;
  std::string blocker;  // why not, when not recognised
  int64_t layers = 0, heads = 0, head_size = 0, hidden = 0, inner = 0, vocab = 0, n_positions = 0;
  float epsilon = 0;
  std::string activation;  // "gelu_tanh" or "gelu_erf"
  bool lm_head = false;    // output is logits (else the last hidden state)
  bool tied_head = false;  // the LM head reads the token embedding table
  std::string input_ids, attention_mask, position_ids;  // input names ("" when absent)
  /// "plain" (logits from ids), "with-past" (past keys and values in, presents out), "merged" (a
  /// with-past and a first-step graph behind an If on `cache_flag`) or "presents-only" (a
  /// first-step export that gives presents but takes no past; only its plain decoder is built).
  std::string form = "plain";
  std::string cache_flag;        // the merged form's use-cache input
  bool past_kept = false;        // the fused graph takes the past and gives the presents
  std::string widened_from;      // "float16"/"bfloat16" when an FP16/BF16 export was widened
  int contrib_ops = 0;           // ONNX Runtime contrib ops rewritten before recognising
  double verified_max_diff = 0;  // largest |difference| to the original graph when checked
  /// One line: "GPT-2 decoder: 6 layers, 12 heads x 64, ..." or "not recognised: <blocker>".
  std::string summary() const;
};

/// Recognises the GPT-2 decoder in a graph that went through fold_constants, fuse_layer_norm,
/// fuse_linear and eliminate_dead_code, and replaces the graph by the canonical fused one:
/// gptrt.Embedding, then per layer LayerNormalization, Linear (qkv), gptrt.Attention (causal,
/// padding mask, 1/sqrt(head size)), Linear (+residual), LayerNormalization, Linear (+GELU),
/// Linear (+residual), then LayerNormalization and the (tied) LM head. Every export form and the
/// Hugging Face import give the same fused graph. The rewrite is checked on random inputs
/// (padded rows included) against the original graph on the reference kernels; when anything
/// does not fit, the graph is left as it was and `blocker` says why.
///
/// With-past exports (rank-4 past key/value inputs concatenated ahead of each layer's keys and
/// values, presents as further outputs) are recognised too: with `keep_past` the fused graph
/// keeps them (gptrt.Attention takes the past and gives the presents), else it is the plain
/// decoder (no past inputs, logits only; a decoder keeps its own KV cache). `original`, when
/// given, is what the check compares against instead of `graph` (a merged decoder before
/// inline_cache_branch).
DecoderInfo fuse_decoder(ir::Graph& graph, bool keep_past = true,
                         const ir::Graph* original = nullptr);

/// Marks (attribute layer_norm_prologue = 1) every gptrt.Linear whose input is a LayerNorm
/// read by gptrt.Linear nodes only, as their first input: a backend may normalise the rows in
/// the GEMM's prologue and skip the LayerNorm node (the cuda backend's skinny GEMMs do).
int mark_layer_norm_prologues(ir::Graph& graph);

/// Marks (attribute attention_follows = 1) every gptrt.Linear whose output only the
/// gptrt.Attention right after it reads (the QKV projection): a backend may run both as one
/// kernel (the cuda backend's qkv_attention_kernel, where its shapes allow).
int mark_attention_projections(ir::Graph& graph);

}  // namespace gptrt::passes

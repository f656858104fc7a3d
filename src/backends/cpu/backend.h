// The CPU backend: the fused plan (or, for graphs that were not recognised, the generic one) with
// its ops lowered to vectorised, multi-threaded kernels: linear layers as gptrt.PackedLinear
// (weights packed at build time, stored packed in the engine, GELU/residual as the epilogue),
// LayerNorm, causal attention, the embedding, float32 elementwise ops. Ops without a kernel here
// run on the reference kernels.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/cpu/gemm.h"
#include "backends/cpu/thread_pool.h"
#include "ir/graph.h"

namespace gptrt::cpu {

/// Domain of the ops the CPU backend adds to a plan.
inline constexpr const char* kDomain = ir::kFusedDomain;

/// Rewrites gptrt.Linear nodes (what passes::fuse_linear and fuse_decoder make of MatMul/Gemm
/// with constant weights) into PackedLinear nodes with weights packed as `weights` (float32,
/// bfloat16 (as pairs where `isa` packs them) or int8 with its scales, per output column or per
/// `int8_group` K values), the LM head's (the node giving the graph's first output) as `head`
/// unless that is kUndefined, and the activation and
/// residual add as the GEMM's epilogue; an Embedding that reads the tied LM head's table reads its
/// FP32 packed copy. Returns the number of nodes rewritten.
int lower_linear(ir::Graph& graph, DType weights = DType::kFloat32, Isa isa = Isa::kAvx512,
                 DType head = DType::kUndefined, int64_t int8_group = 0);

/// Moves LayerNormalization over the last axis with constant scale and bias (and no mean/inv-std
/// outputs) to the backend's LayerNorm kernel.
int lower_layer_norm(ir::Graph& graph);

/// Moves the float32 elementwise ops the CPU backend runs multi-threaded (Add, Sub, Mul, Div,
/// Pow, Tanh) into its domain; their kernels fall back to the reference for unusual broadcasts.
int lower_elementwise(ir::Graph& graph);
/// True for the default-domain ops lower_elementwise moves.
bool is_elementwise(const std::string& op_type);
/// Runs one of those ops.
std::vector<Tensor> run_elementwise(const ir::Node& node, const std::vector<const Tensor*>& inputs,
                                    ThreadPool& pool, const backends::OutputBuffers& out);

/// True when the CPU backend has a kernel for `op_type` of its own domain.
bool has_kernel(const std::string& op_type);
/// Whether the cpu backend's own kernel runs `node` (a gptrt op it has, in a form it runs:
/// attention with a past input and output runs on the reference kernel).
bool runs_natively(const ir::Node& node);

/// Checks a node of an engine's plan that only this backend has (PackedLinear, LayerNorm)
/// against what its kernel reads: input and output counts, attributes, and weights whose
/// dtype and shape match (packed for `isa`). Throws a parse error naming the node and field.
void check_lowered_node(const ir::Graph& graph, const ir::Node& node, Isa isa);

/// Runs one op of the CPU backend's own domain, writing its output where `out` says (the
/// context's activation arena) when it fits.
std::vector<Tensor> run_node(const ir::Node& node, const std::vector<const Tensor*>& inputs,
                             Isa isa, ThreadPool& pool, const backends::OutputBuffers& out = {});

}  // namespace gptrt::cpu

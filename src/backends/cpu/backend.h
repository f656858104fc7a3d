// The CPU backend: the generic plan with its hot ops lowered to vectorised, multi-threaded
// kernels. Today: MatMul/Gemm with constant weights become gptrt.PackedLinear (weights packed at
// build time, stored packed in the engine); every other op runs on the reference kernels.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backends/cpu/gemm.h"
#include "backends/cpu/thread_pool.h"
#include "ir/graph.h"

namespace gptrt::cpu {

/// Domain of the ops the CPU backend adds to a plan.
inline constexpr const char* kDomain = ir::kFusedDomain;

/// Rewrites MatMul and Gemm nodes (weights packed as `weights`: float32 or bfloat16) whose weight
/// is a constant 2-D float32 matrix (Gemm: no transA, alpha = beta = 1, bias absent or [N]) into
/// PackedLinear nodes with packed weights. Returns the number of nodes rewritten.
int lower_linear(ir::Graph& graph, DType weights = DType::kFloat32);

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
                                    ThreadPool& pool);

/// True when the CPU backend has a kernel for `op_type` of its own domain.
bool has_kernel(const std::string& op_type);

/// Runs one op of the CPU backend's own domain.
std::vector<Tensor> run_node(const ir::Node& node, const std::vector<const Tensor*>& inputs,
                             Isa isa, ThreadPool& pool);

}  // namespace gptrt::cpu

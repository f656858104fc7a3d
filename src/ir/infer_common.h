// What the per-family shape inference files share (internal to src/ir/): value access, dim
// arithmetic, broadcasting, and every op's inference function, which op_registry.cpp lists.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace gptrt::ir::infer {

[[noreturn]] void fail(const Node& n, const std::string& msg);
Value& out(Graph& g, const Node& n, size_t i);
const Value& in(const Graph& g, const Node& n, size_t i);
bool has_output(const Node& n, size_t i);
int64_t normalize_axis(const Node& n, int64_t axis, size_t rank);
Dim mul_dims(const Dim& a, const Dim& b);
Dim add_dims(const Dim& a, const Dim& b);
Dim sub_dims(const Dim& a, const Dim& b);
Dim div_dims(const Dim& a, const Dim& b);
SymShape broadcast(const Node& n, const SymShape& a, const SymShape& b);
void set(Graph& g, const Node& n, size_t i, DType dtype, SymShape shape);
void require_float(const Node& n, const Value& v);
void elementwise_sym(Graph& g, const Node& n, const std::function<Dim(const Dim&, const Dim&)>& f);
std::optional<std::vector<Dim>> shape_operand(const Graph& g, const Node& n, size_t i);
SymShape unknown_rank_shape(const Graph& g, const Node& n, size_t i);
std::optional<std::vector<int64_t>> axes_of(const Graph& g, const Node& n, size_t input_index,
                                            bool from_input);
void infer_binary(Graph& g, const Node& n, bool to_bool);
void infer_unary(Graph& g, const Node& n);
void infer_cast(Graph& g, const Node& n, DType to);
void infer_where(Graph& g, const Node& n);
void infer_dropout(Graph& g, const Node& n);
void infer_reshape(Graph& g, const Node& n);
void infer_squeeze(Graph& g, const Node& n);
void infer_unsqueeze(Graph& g, const Node& n);
void infer_concat(Graph& g, const Node& n);
void infer_split(Graph& g, const Node& n);
void infer_slice(Graph& g, const Node& n);
void infer_gather(Graph& g, const Node& n);
void infer_gather_nd(Graph& g, const Node& n);
void infer_transpose(Graph& g, const Node& n);
void infer_range(Graph& g, const Node& n);
void infer_constant(Graph& g, const Node& n);
void infer_constant_of_shape(Graph& g, const Node& n);
void infer_expand(Graph& g, const Node& n);
void infer_tile(Graph& g, const Node& n);
void infer_shape_op(Graph& g, const Node& n);
void infer_size(Graph& g, const Node& n);
void infer_flatten(Graph& g, const Node& n);
void infer_matmul(Graph& g, const Node& n);
void infer_gemm(Graph& g, const Node& n);
void infer_reduce(Graph& g, const Node& n, bool axes_from_input);
void infer_layer_norm(Graph& g, const Node& n);
void infer_embedding(Graph& g, const Node& n);
void infer_linear(Graph& g, const Node& n);
void infer_attention(Graph& g, const Node& n);
void infer_if(Graph& g, const Node& n);
void infer_cache_gate(Graph& g, const Node& n);

}  // namespace gptrt::ir::infer

// Symbolic shape and dtype inference, and the list of ops gptrt can import.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace gptrt::ir {

/// Oldest and newest default-domain opset gptrt imports.
constexpr int64_t kMinOpset = 13;
constexpr int64_t kMaxOpset = 21;

/// True when op `op_type` of `domain` at `opset` can be imported; otherwise `why` says why.
bool op_supported(const std::string& op_type, const std::string& domain, int64_t opset,
                  std::string* why);
/// Names of every supported op, sorted.
std::vector<std::string> supported_ops();
/// Names of the supported ONNX Runtime contrib ops (domain com.microsoft), sorted.
std::vector<std::string> supported_contrib_ops();

/// True when infer_node knows `node`'s op (ONNX, the gptrt domain's fused ops, and ONNX ops a
/// backend moved into its domain); ops a backend lowered to are checked by that backend.
bool can_infer(const Node& node);
/// Checks `node`'s input and output counts against its op, then infers dtype, symbolic shape and
/// (for shape arithmetic) symbolic contents of `node`'s outputs from its inputs. Throws
/// gptrt::Error when the inputs cannot be valid.
void infer_node(Graph& graph, const Node& node);
/// Runs infer_node over every node in order.
void infer_shapes(Graph& graph);

/// The tensor a Constant node holds (value, value_float(s) or value_int(s)).
Tensor constant_value(const Node& node);
/// Integer contents of a constant int64/int32 value, if it is one.
std::optional<std::vector<int64_t>> constant_ints(const Value* v);
/// Symbolic contents of an int64/int32 1-D or scalar value (constant or shape arithmetic).
std::optional<std::vector<Dim>> symbolic_ints(const Value* v);

}  // namespace gptrt::ir

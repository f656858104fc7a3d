// What a plan must satisfy before anything runs it: its optimization profiles (checked when an
// engine is built from user flags and again when an engine file is loaded) and, for a loaded
// engine, every constant, index limit and node (see docs/ENGINE_FORMAT.md, "What a loaded
// engine satisfies").
#pragma once

#include <string>

#include "gptrt/engine.h"
#include "ir/graph.h"
#include "runtime/engine_impl.h"

namespace gptrt {

/// Throws ErrorCode::kInvalidArgument unless `profile` (number `index`) gives every input of
/// `graph` once, with its rank, 0 <= min <= opt <= max (zero-size dims are legal), fixed dims
/// fixed, one range per symbolic dim, sizes that fit 64 bits and (when n_positions > 0) sequence
/// lengths within it.
void check_profile(const ir::Graph& graph, const OptimizationProfile& profile, size_t index,
                   int64_t n_positions);

/// Throws ErrorCode::kParseError, naming the node or value and the field, unless the loaded plan
/// of `engine` (read from `path`) is one gptrt's own builder could have written: constants match
/// their declared dtype and shape; inputs are distinct, typed and in every profile; index limits
/// are >= 1 and within the tables they index; every node has its op's input and output counts
/// and attributes and, re-inferred from the inputs, gives the dtypes and shapes stored with it.
/// Ops a backend lowered to are checked by that backend's check_engine.
void check_plan(const Engine::Impl& engine, const std::string& path);

}  // namespace gptrt

// The graph IR every importer produces and every pass and backend consumes. Values are
// addressed by index; a node lists the values it reads and writes.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "gptrt/tensor.h"

namespace gptrt::ir {

/// Domain of the fused ops the passes create (Embedding, Linear, Attention) and of the ops
/// backends lower to (PackedLinear).
inline constexpr const char* kFusedDomain = "gptrt";
/// ONNX Runtime's contrib ops (its transformer optimizer writes them).
inline constexpr const char* kContribDomain = "com.microsoft";

/// One dimension: a known size, or a symbol (a name such as "batch_size", or an expression).
struct Dim {
  int64_t value = -1;  // meaningful when known (negative only for integer contents)
  std::string symbol;  // empty when known; "?" when nothing is known

  static Dim known(int64_t v) { return Dim{v, ""}; }
  static Dim sym(std::string s) { return Dim{-1, s.empty() ? "?" : std::move(s)}; }
  static Dim unknown() { return Dim{-1, "?"}; }
  bool is_known() const { return symbol.empty(); }
  std::string str() const { return is_known() ? std::to_string(value) : symbol; }
  bool operator==(const Dim& o) const {
    return is_known() ? o.value == value : (!o.is_known() && symbol != "?" && o.symbol == symbol);
  }
};

/// A shape whose rank may be unknown and whose dims may be symbolic.
struct SymShape {
  bool rank_known = false;
  std::vector<Dim> dims;

  static SymShape of(std::vector<Dim> d) { return SymShape{true, std::move(d)}; }
  static SymShape from(const Shape& s);
  bool fully_known() const;
  Shape concrete() const;  // requires fully_known()
  std::string str() const;
};

class Graph;

/// Attribute of a node; only the field matching `kind` is meaningful.
struct Attribute {
  // kGraph is last: engine files store the kind as a number.
  enum class Kind { kFloat, kInt, kString, kTensor, kFloats, kInts, kStrings, kGraph };
  Kind kind = Kind::kInt;
  float f = 0;
  int64_t i = 0;
  std::string s;
  Tensor t;
  std::vector<float> floats;
  std::vector<int64_t> ints;
  std::vector<std::string> strings;
  // A subgraph (If's branches). Its inputs are the outer values it reads, which its node lists
  // as inputs after its own: every subgraph is closed, with no reference to an outer scope.
  std::shared_ptr<const Graph> graph;
};

/// An int attribute made for a node.
Attribute int_attr(int64_t v);
/// A float attribute made for a node.
Attribute float_attr(float v);
/// An ints attribute made for a node.
Attribute ints_attr(std::vector<int64_t> v);
/// A string attribute made for a node.
Attribute string_attr(const std::string& v);
/// A graph attribute made for a node.
Attribute graph_attr(Graph g);

/// A tensor flowing through the graph.
struct Value {
  std::string name;
  DType dtype = DType::kUndefined;
  SymShape shape;
  Tensor constant;         // non-empty for initializers and folded values
  bool is_weight = false;  // an initializer, or folded from one (counts as a parameter)
  // Symbolic contents of small int64 tensors (shape arithmetic): one Dim per element.
  std::optional<std::vector<Dim>> sym_value;
  bool is_constant() const { return !constant.empty(); }
};

/// An operator application.
struct Node {
  std::string name, op_type, domain;
  std::vector<int> inputs;   // value ids; -1 for an omitted optional input
  std::vector<int> outputs;  // value ids; -1 for an omitted optional output
  std::map<std::string, Attribute> attrs;

  bool has_attr(const std::string& n) const { return attrs.count(n) != 0; }
  int64_t attr_int(const std::string& n, int64_t fallback) const;
  float attr_float(const std::string& n, float fallback) const;
  std::string attr_string(const std::string& n, const std::string& fallback) const;
  std::vector<int64_t> attr_ints(const std::string& n) const;  // empty if absent
  const Graph* attr_graph(const std::string& n) const;         // null if absent
  /// "node '/h.0/Add' (Add)" for messages.
  std::string describe() const;
};

/// A whole model: values, nodes in topological order, graph inputs and outputs.
class Graph {
 public:
  std::vector<Value> values;
  std::vector<Node> nodes;
  std::vector<int> inputs;   // value ids of graph inputs (not initializers)
  std::vector<int> outputs;  // value ids of graph outputs
  int64_t opset = 0;
  int64_t ir_version = 0;
  std::string producer, producer_version, source;

  /// Adds a value; its name must be unique.
  int add_value(Value v);
  /// Adds a constant value holding `t` (dtype and shape from it); its name must be unique.
  int add_constant(std::string name, Tensor t, bool is_weight = true);
  /// Id of the value named `name`, or -1.
  int find(const std::string& name) const;
  /// Rebuilds the name index after values were renamed or compacted.
  void reindex();
  /// Input `i` of `node` as a value, or nullptr if omitted.
  const Value* input(const Node& node, size_t i) const {
    return i < node.inputs.size() && node.inputs[i] >= 0 ? &values[node.inputs[i]] : nullptr;
  }

 private:
  std::unordered_map<std::string, int> index_;
};

}  // namespace gptrt::ir

#include "ir/graph.h"

#include "gptrt/error.h"

namespace gptrt::ir {

SymShape SymShape::from(const Shape& s) {
  SymShape out{true, {}};
  for (int64_t d : s) out.dims.push_back(Dim::known(d));
  return out;
}

bool SymShape::fully_known() const {
  if (!rank_known) return false;
  for (const Dim& d : dims) {
    if (!d.is_known()) return false;
  }
  return true;
}

Shape SymShape::concrete() const {
  Shape s;
  for (const Dim& d : dims) s.push_back(d.value);
  return s;
}

std::string SymShape::str() const {
  if (!rank_known) return "[?]";
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + dims[i].str();
  return s + "]";
}

int64_t Node::attr_int(const std::string& n, int64_t fallback) const {
  auto it = attrs.find(n);
  return it == attrs.end() ? fallback : it->second.i;
}

float Node::attr_float(const std::string& n, float fallback) const {
  auto it = attrs.find(n);
  return it == attrs.end() ? fallback : it->second.f;
}

std::string Node::attr_string(const std::string& n, const std::string& fallback) const {
  auto it = attrs.find(n);
  return it == attrs.end() ? fallback : it->second.s;
}

std::vector<int64_t> Node::attr_ints(const std::string& n) const {
  auto it = attrs.find(n);
  return it == attrs.end() ? std::vector<int64_t>{} : it->second.ints;
}

std::string Node::describe() const {
  return "node '" + name + "' (" + (domain.empty() ? "" : domain + ".") + op_type + ")";
}

int Graph::add_value(Value v) {
  if (index_.count(v.name)) {
    throw Error(ErrorCode::kParseError, "value '" + v.name + "' is defined twice in the graph");
  }
  int id = static_cast<int>(values.size());
  index_[v.name] = id;
  values.push_back(std::move(v));
  return id;
}

int Graph::add_constant(std::string name, Tensor t, bool is_weight) {
  Value v;
  v.name = std::move(name);
  v.dtype = t.dtype();
  v.shape = SymShape::from(t.shape());
  v.constant = std::move(t);
  v.is_weight = is_weight;
  return add_value(std::move(v));
}

int Graph::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? -1 : it->second;
}

void Graph::reindex() {
  index_.clear();
  for (size_t i = 0; i < values.size(); ++i) index_[values[i].name] = static_cast<int>(i);
}

Attribute int_attr(int64_t v) {
  Attribute a;
  a.kind = Attribute::Kind::kInt;
  a.i = v;
  return a;
}

Attribute float_attr(float v) {
  Attribute a;
  a.kind = Attribute::Kind::kFloat;
  a.f = v;
  return a;
}

Attribute ints_attr(std::vector<int64_t> v) {
  Attribute a;
  a.kind = Attribute::Kind::kInts;
  a.ints = std::move(v);
  return a;
}

Attribute string_attr(const std::string& v) {
  Attribute a;
  a.kind = Attribute::Kind::kString;
  a.s = v;
  return a;
}

Attribute graph_attr(Graph g) {
  Attribute a;
  a.kind = Attribute::Kind::kGraph;
  a.graph = std::make_shared<const Graph>(std::move(g));
  return a;
}

const Graph* Node::attr_graph(const std::string& n) const {
  auto it = attrs.find(n);
  return it == attrs.end() || it->second.kind != Attribute::Kind::kGraph ? nullptr
                                                                         : it->second.graph.get();
}

}  // namespace gptrt::ir

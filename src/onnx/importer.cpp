#include "onnx/importer.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "gptrt/error.h"
#include "ir/shape_inference.h"
#include "ir/verifier.h"
#include "onnx/onnx_model.h"

namespace gptrt::onnx {
namespace {

ir::SymShape shape_of(const ValueInfoData& v) {
  if (!v.has_shape) return ir::SymShape{};
  ir::SymShape s{true, {}};
  for (size_t i = 0; i < v.dims.size(); ++i) {
    const DimData& d = v.dims[i];
    if (d.value >= 0 && d.param.empty())
      s.dims.push_back(ir::Dim::known(d.value));
    else if (!d.param.empty())
      s.dims.push_back(ir::Dim::sym(d.param));
    else
      s.dims.push_back(ir::Dim::sym(v.name + "_dim" + std::to_string(i)));
  }
  return s;
}

ir::Attribute convert_attribute(const std::string& file, const NodeData& node,
                                const AttributeData& a) {
  using T = AttributeData::Type;
  ir::Attribute r;
  std::string where =
      "'" + file + "': node '" + node.name + "' (" + node.op_type + ") attribute '" + a.name + "'";
  if (!a.ref_attr_name.empty())
    throw Error(ErrorCode::kUnsupported,
                where +
                    " refers to a function attribute; model-local functions are not supported, "
                    "export with them inlined");
  switch (a.type) {
    case T::kFloat:
      r.kind = ir::Attribute::Kind::kFloat;
      r.f = a.f;
      break;
    case T::kInt:
      r.kind = ir::Attribute::Kind::kInt;
      r.i = a.i;
      break;
    case T::kString:
      r.kind = ir::Attribute::Kind::kString;
      r.s = a.s;
      break;
    case T::kTensor:
      r.kind = ir::Attribute::Kind::kTensor;
      r.t = a.t.value;
      break;
    case T::kFloats:
      r.kind = ir::Attribute::Kind::kFloats;
      r.floats = a.floats;
      break;
    case T::kInts:
      r.kind = ir::Attribute::Kind::kInts;
      r.ints = a.ints;
      break;
    case T::kStrings:
      r.kind = ir::Attribute::Kind::kStrings;
      r.strings = a.strings;
      break;
    case T::kGraph:  // If's branches: converted by convert_body
    case T::kGraphs:
      throw Error(ErrorCode::kUnsupported,
                  where + " holds a subgraph; of the control-flow ops gptrt runs If only (not " +
                      "Loop or Scan)");
    default:
      throw Error(ErrorCode::kParseError, where + " has unknown attribute type " +
                                              std::to_string(static_cast<int>(a.type)));
  }
  return r;
}

// Every node gptrt cannot run, in `gd` and its subgraphs, with advice that fits the reason.
void collect_unsupported(const GraphData& gd, int64_t opset, std::vector<std::string>& unsupported,
                         std::set<std::string>& domains, bool& too_old) {
  for (const NodeData& n : gd.nodes) {
    std::string why;
    if (!ir::op_supported(n.op_type, n.domain, opset, &why)) {
      const bool foreign = !n.domain.empty() && n.domain != "ai.onnx";
      if (foreign) domains.insert(n.domain);
      too_old = too_old || why.find("needs opset") != std::string::npos;
      unsupported.push_back(
          "node '" + n.name + "' (op " +
          (foreign ? n.domain + "." + n.op_type : n.op_type + ", opset " + std::to_string(opset)) +
          "): " + why);
    }
    for (const AttributeData& a : n.attributes)
      if (a.graph) collect_unsupported(*a.graph, opset, unsupported, domains, too_old);
  }
}

void add_initializers(const GraphData& gd, ir::Graph& g) {
  for (const TensorData& t : gd.initializers) {
    ir::Value v;
    v.name = t.name;
    v.dtype = t.value.dtype();
    v.shape = ir::SymShape::from(t.value.shape());
    v.constant = t.value;
    v.is_weight = true;
    g.add_value(std::move(v));
  }
}

// Finds a name visible from a subgraph in its enclosing graphs: its value there, or null.
using OuterScope = std::function<const ir::Value*(const std::string&)>;

// The id of `name` in `g`. A name that only an enclosing graph defines becomes a constant of `g`
// when it is an initializer there (a view of the same data), else a new input of `g` (its node
// passes the outer value in: every subgraph is closed). -1 when undefined.
int resolve(ir::Graph& g, const std::string& name, const OuterScope* outer,
            std::vector<std::string>* captures) {
  int id = g.find(name);
  if (id >= 0 || !outer) return id;
  const ir::Value* ov = (*outer)(name);
  if (!ov) return -1;
  if (ov->is_constant()) return g.add_constant(name, ov->constant, ov->is_weight);
  ir::Value v;
  v.name = name;
  id = g.add_value(std::move(v));
  g.inputs.push_back(id);
  captures->push_back(name);
  return id;
}

void convert_body(const std::string& path, const GraphData& gd, ir::Graph& g,
                  const OuterScope* outer, std::vector<std::string>* captures);

// An If's branch as a closed graph; `captures` receives the outer names it reads.
ir::Graph convert_branch(const std::string& path, const NodeData& n, const AttributeData& a,
                         ir::Graph& g, const OuterScope* outer,
                         std::vector<std::string>* outer_captures,
                         std::vector<std::string>* captures) {
  if (!a.graph->inputs.empty())
    throw Error(ErrorCode::kParseError, "'" + path + "': node '" + n.name + "' (If) branch '" +
                                            a.name + "' declares inputs; If branches take none");
  ir::Graph b;
  b.opset = g.opset;
  b.ir_version = g.ir_version;
  b.source = path;
  OuterScope visible = [&](const std::string& name) -> const ir::Value* {
    int id = resolve(g, name, outer, outer_captures);
    return id < 0 ? nullptr : &g.values[static_cast<size_t>(id)];
  };
  convert_body(path, *a.graph, b, &visible, captures);
  for (const ValueInfoData& o : a.graph->outputs) {
    int id = resolve(b, o.name, &visible, captures);
    if (id < 0)
      throw Error(ErrorCode::kParseError, "'" + path + "': output '" + o.name + "' of branch '" +
                                              a.name + "' of node '" + n.name +
                                              "' (If) is produced by no node");
    b.outputs.push_back(id);
  }
  return b;
}

// If: both branches closed over the union of what they read, in one order; the node's inputs
// are its condition, then those outer values.
void convert_if(const std::string& path, const NodeData& n, ir::Node& node, ir::Graph& g,
                const OuterScope* outer, std::vector<std::string>* outer_captures) {
  std::map<std::string, ir::Graph> branches;
  std::vector<std::string> all;
  for (const AttributeData& a : n.attributes) {
    if (a.type != AttributeData::Type::kGraph || !a.graph ||
        (a.name != "then_branch" && a.name != "else_branch"))
      throw Error(ErrorCode::kParseError, "'" + path + "': node '" + n.name +
                                              "' (If) has attribute '" + a.name +
                                              "'; If has the graphs then_branch and else_branch");
    std::vector<std::string> caps;
    branches[a.name] = convert_branch(path, n, a, g, outer, outer_captures, &caps);
    for (const std::string& c : caps)
      if (std::find(all.begin(), all.end(), c) == all.end()) all.push_back(c);
  }
  if (branches.size() != 2)
    throw Error(ErrorCode::kParseError,
                "'" + path + "': node '" + n.name + "' (If) lacks then_branch or else_branch");
  for (auto& [name, b] : branches) {
    std::vector<int> inputs;
    for (const std::string& c : all) {
      int id = b.find(c);
      if (id < 0) {  // read by the other branch only
        ir::Value v;
        v.name = c;
        id = b.add_value(std::move(v));
      }
      inputs.push_back(id);
    }
    b.inputs = inputs;
    node.attrs[name] = ir::graph_attr(std::move(b));
  }
  for (const std::string& c : all) node.inputs.push_back(resolve(g, c, outer, outer_captures));
}

void convert_body(const std::string& path, const GraphData& gd, ir::Graph& g,
                  const OuterScope* outer, std::vector<std::string>* captures) {
  if (outer) add_initializers(gd, g);  // the main graph's come before its inputs
  for (const NodeData& n : gd.nodes) {
    ir::Node node;
    node.name = n.name;
    node.op_type = n.op_type;
    node.domain = n.domain == "ai.onnx" ? "" : n.domain;
    bool is_if = node.domain.empty() && n.op_type == "If";
    if (!is_if)
      for (const AttributeData& a : n.attributes)
        node.attrs[a.name] = convert_attribute(path, n, a);
    for (const std::string& name : n.inputs) {
      if (name.empty()) {
        node.inputs.push_back(-1);
        continue;
      }
      int id = resolve(g, name, outer, captures);
      if (id < 0) {
        throw Error(ErrorCode::kParseError, "'" + path + "': " + node.describe() + " reads '" +
                                                name +
                                                "', which no earlier node, input or initializer "
                                                "defines (is the graph topologically sorted?)");
      }
      node.inputs.push_back(id);
    }
    if (is_if) convert_if(path, n, node, g, outer, captures);
    for (const std::string& name : n.outputs) {
      if (name.empty()) {
        node.outputs.push_back(-1);
        continue;
      }
      ir::Value v;
      v.name = name;
      node.outputs.push_back(g.add_value(std::move(v)));
    }
    g.nodes.push_back(std::move(node));
  }
}

}  // namespace

ImportedModel import_onnx(const std::string& path) {
  ModelData m = read_model(path);
  ImportedModel out;
  out.files = m.files;
  ir::Graph& g = out.graph;
  g.source = path;
  g.ir_version = m.ir_version;
  g.producer = m.producer_name;
  g.producer_version = m.producer_version;

  auto it = m.opsets.find("");
  if (it == m.opsets.end()) {
    throw Error(ErrorCode::kUnsupported,
                "'" + path +
                    "' imports no default-domain (ai.onnx) opset; it is not a model gptrt can run");
  }
  g.opset = it->second;
  if (g.opset < ir::kMinOpset || g.opset > ir::kMaxOpset) {
    throw Error(ErrorCode::kUnsupported,
                "'" + path + "' uses opset " + std::to_string(g.opset) + "; gptrt imports opsets " +
                    std::to_string(ir::kMinOpset) + " to " + std::to_string(ir::kMaxOpset) +
                    "; re-export with torch.onnx.export(..., opset_version=17)");
  }
  if (m.graph.sparse_initializers) {
    throw Error(ErrorCode::kUnsupported,
                "'" + path + "' has sparse initializers, which gptrt does not support");
  }

  // Every unsupported op is reported at once, before anything runs, with advice that fits the
  // reason: another domain's ops (ONNX Runtime's optimizer), an op newer than the opset, or an
  // op gptrt does not have.
  std::vector<std::string> unsupported;
  std::set<std::string> domains;
  bool too_old = false;
  collect_unsupported(m.graph, g.opset, unsupported, domains, too_old);
  if (!unsupported.empty()) {
    std::string msg =
        "'" + path + "' uses " + std::to_string(unsupported.size()) + " node(s) gptrt cannot run:";
    for (size_t i = 0; i < unsupported.size() && i < 10; ++i) msg += "\n  " + unsupported[i];
    if (unsupported.size() > 10)
      msg += "\n  ... and " + std::to_string(unsupported.size() - 10) + " more";
    if (domains.count("com.microsoft"))
      msg +=
          "\nthis model was rewritten by ONNX Runtime's transformer optimizer (com.microsoft "
          "ops, e.g. from optimum --optimize O1-O4); gptrt fuses the plain export itself: give it "
          "the export from before optimization";
    else if (!domains.empty())
      msg += "\nops of other domains than ai.onnx are not supported";
    if (too_old)
      msg +=
          "\nsome ops need a newer opset than the model imports: re-export with a newer "
          "opset_version (gptrt imports " +
          std::to_string(ir::kMinOpset) + "-" + std::to_string(ir::kMaxOpset) + ")";
    msg += "\n`gptrt inspect --ops` lists the ops gptrt runs";
    throw Error(ErrorCode::kUnsupported, msg);
  }

  add_initializers(m.graph, g);
  for (const ValueInfoData& in : m.graph.inputs) {
    if (g.find(in.name) >= 0) continue;  // an initializer listed as an input (old exporters)
    if (!in.is_tensor || !dtype_is_known(in.elem_type)) {
      throw Error(ErrorCode::kUnsupported,
                  "'" + path + "': graph input '" + in.name +
                      "' is not a tensor of a supported dtype (elem_type " +
                      std::to_string(in.elem_type) + ")");
    }
    if (!in.has_shape) {
      throw Error(ErrorCode::kUnsupported,
                  "'" + path + "': graph input '" + in.name +
                      "' has no shape; export with dynamic_axes so its rank is known");
    }
    ir::Value v;
    v.name = in.name;
    v.dtype = static_cast<DType>(in.elem_type);
    v.shape = shape_of(in);
    g.inputs.push_back(g.add_value(std::move(v)));
  }
  convert_body(path, m.graph, g, nullptr, nullptr);
  for (const ValueInfoData& o : m.graph.outputs) {
    int id = g.find(o.name);
    if (id < 0)
      throw Error(ErrorCode::kParseError,
                  "'" + path + "': graph output '" + o.name + "' is produced by no node");
    g.outputs.push_back(id);
    out.declared_outputs.push_back(shape_of(o));
  }
  if (g.outputs.empty()) throw Error(ErrorCode::kParseError, "'" + path + "' has no graph outputs");

  ir::infer_shapes(g);
  // Prefer the exporter's names for output dims the inference could not name.
  for (size_t i = 0; i < g.outputs.size(); ++i) {
    ir::Value& v = g.values[g.outputs[i]];
    const ir::SymShape& decl = out.declared_outputs[i];
    if (!decl.rank_known) continue;
    if (!v.shape.rank_known || v.shape.dims.size() != decl.dims.size()) {
      v.shape = decl;
      continue;
    }
    for (size_t d = 0; d < decl.dims.size(); ++d) {
      if (!v.shape.dims[d].is_known() &&
          (decl.dims[d].is_known() || v.shape.dims[d].symbol == "?" ||
           v.shape.dims[d].symbol.front() == '(')) {
        v.shape.dims[d] = decl.dims[d];
      }
    }
  }
  ir::verify(g);
  return out;
}

}  // namespace gptrt::onnx

// The ONNX protobuf messages gptrt writes (field numbers from onnx.proto): ModelProto,
// GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto.
#include "onnx/writer.h"

#include <cstring>

#include "gptrt/engine.h"
#include "gptrt/error.h"
#include "platform/platform.h"

namespace gptrt::onnx {
namespace {

// One protobuf message being written.
class Message {
 public:
  void varint_field(uint32_t field, uint64_t v) {
    key(field, 0);
    varint(v);
  }
  void fixed32_field(uint32_t field, float f) {
    key(field, 5);
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    for (int i = 0; i < 4; ++i) buf_.push_back(static_cast<char>(bits >> (8 * i)));
  }
  void bytes_field(uint32_t field, const void* data, size_t n) {
    key(field, 2);
    varint(n);
    buf_.append(static_cast<const char*>(data), n);
  }
  void string_field(uint32_t field, const std::string& s) {
    bytes_field(field, s.data(), s.size());
  }
  void message_field(uint32_t field, const Message& m) {
    bytes_field(field, m.buf_.data(), m.buf_.size());
  }
  const std::string& bytes() const { return buf_; }

 private:
  void key(uint32_t field, uint32_t wire) { varint((uint64_t{field} << 3) | wire); }
  void varint(uint64_t v) {
    while (v >= 0x80) {
      buf_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    buf_.push_back(static_cast<char>(v));
  }
  std::string buf_;
};

Message tensor(const std::string& name, const Tensor& t) {
  Message m;
  for (int64_t d : t.shape()) m.varint_field(1, static_cast<uint64_t>(d));  // dims
  m.varint_field(2, static_cast<uint64_t>(t.dtype()));                      // data_type
  m.string_field(8, name);
  m.bytes_field(9, t.raw(), t.nbytes());  // raw_data (little-endian, as ONNX stores it)
  return m;
}

Message value_info(const ir::Value& v) {
  Message shape;
  for (const ir::Dim& d : v.shape.dims) {
    Message dim;
    if (d.is_known())
      dim.varint_field(1, static_cast<uint64_t>(d.value));
    else
      dim.string_field(2, d.symbol == "?" ? std::string() : d.symbol);
    shape.message_field(1, dim);
  }
  Message tensor_type;
  tensor_type.varint_field(1, static_cast<uint64_t>(v.dtype));
  if (v.shape.rank_known) tensor_type.message_field(2, shape);
  Message type;
  type.message_field(1, tensor_type);
  Message m;
  m.string_field(1, v.name);
  m.message_field(2, type);
  return m;
}

Message attribute(const std::string& name, const ir::Attribute& a) {
  using K = ir::Attribute::Kind;
  Message m;
  m.string_field(1, name);
  switch (a.kind) {
    case K::kFloat:
      m.fixed32_field(2, a.f);
      m.varint_field(20, 1);
      break;
    case K::kInt:
      m.varint_field(3, static_cast<uint64_t>(a.i));
      m.varint_field(20, 2);
      break;
    case K::kString:
      m.string_field(4, a.s);
      m.varint_field(20, 3);
      break;
    case K::kTensor:
      m.message_field(5, tensor("", a.t));
      m.varint_field(20, 4);
      break;
    case K::kFloats:
      for (float f : a.floats) m.fixed32_field(7, f);
      m.varint_field(20, 6);
      break;
    case K::kInts:
      for (int64_t i : a.ints) m.varint_field(8, static_cast<uint64_t>(i));
      m.varint_field(20, 7);
      break;
    case K::kStrings:
      for (const std::string& s : a.strings) m.string_field(9, s);
      m.varint_field(20, 8);
      break;
    case K::kGraph:  // the graphs gptrt writes (Hugging Face imports) have no control flow
      throw Error(ErrorCode::kUnsupported, "attribute '" + name +
                                               "' holds a subgraph; the ONNX writer writes "
                                               "graphs without control flow only");
  }
  return m;
}

}  // namespace

void write_model(const ir::Graph& g, const std::string& path) {
  auto name_of = [&](int id) {
    return id < 0 ? std::string() : g.values[static_cast<size_t>(id)].name;
  };
  Message graph;
  for (const ir::Node& n : g.nodes) {
    if (!n.domain.empty())
      throw Error(ErrorCode::kUnsupported,
                  n.describe() + ": only ONNX-domain ops can be written to an ONNX file");
    Message node;
    for (int id : n.inputs) node.string_field(1, name_of(id));
    for (int id : n.outputs) node.string_field(2, name_of(id));
    node.string_field(3, n.name);
    node.string_field(4, n.op_type);
    for (const auto& [name, a] : n.attrs) node.message_field(5, attribute(name, a));
    graph.message_field(1, node);
  }
  graph.string_field(2, g.producer.empty() ? "gptrt" : g.producer);
  for (const ir::Value& v : g.values)
    if (v.is_constant()) graph.message_field(5, tensor(v.name, v.constant));
  for (int id : g.inputs) graph.message_field(11, value_info(g.values[static_cast<size_t>(id)]));
  for (int id : g.outputs) graph.message_field(12, value_info(g.values[static_cast<size_t>(id)]));
  Message opset;
  opset.string_field(1, "");
  opset.varint_field(2, static_cast<uint64_t>(g.opset));
  Message model;
  model.varint_field(1, static_cast<uint64_t>(g.ir_version > 0 ? g.ir_version : 8));
  model.string_field(2, "gptrt");
  model.string_field(3, version());
  model.message_field(7, graph);
  model.message_field(8, opset);
  const std::string& bytes = model.bytes();
  platform::write_file_atomically(path, bytes.data(), bytes.size());
}

}  // namespace gptrt::onnx

// Prints what gptrt's ONNX reader decoded, as JSON, for tools/onnx_crosscheck.py to compare with
// the `onnx` Python package: nodes (op, name, inputs, outputs, attributes) and initializers
// (name, dtype, dims, FNV-1a 64 of the bytes).
#include <cstdio>
#include <string>

#include "core/json.h"
#include "gptrt/error.h"
#include "onnx/onnx_model.h"

namespace {

std::string fnv(const gptrt::Tensor& t) {
  uint64_t h = 0xcbf29ce484222325ull;
  const auto* p = static_cast<const uint8_t*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string tensor_json(const gptrt::onnx::TensorData& t) {
  std::string dims;
  for (int64_t d : t.value.shape()) dims += (dims.empty() ? "" : ",") + std::to_string(d);
  return "{\"name\":" + gptrt::json::quote(t.name) +
         ",\"dtype\":" + std::to_string(static_cast<int>(t.value.dtype())) + ",\"dims\":[" + dims +
         "],\"fnv\":\"" + fnv(t.value) + "\"}";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: onnx_dump MODEL.onnx\n");
    return 1;
  }
  try {
    gptrt::onnx::ModelData m = gptrt::onnx::read_model(argv[1]);
    std::string out = "{\"ir_version\":" + std::to_string(m.ir_version) +
                      ",\"producer\":" + gptrt::json::quote(m.producer_name) + ",\"opsets\":{";
    bool first = true;
    for (const auto& [d, v] : m.opsets) {
      out += (first ? "" : ",") + gptrt::json::quote(d) + ":" + std::to_string(v);
      first = false;
    }
    out += "},\"nodes\":[";
    for (size_t i = 0; i < m.graph.nodes.size(); ++i) {
      const auto& n = m.graph.nodes[i];
      out += (i ? "," : "") + std::string("{\"op\":") + gptrt::json::quote(n.op_type) +
             ",\"name\":" + gptrt::json::quote(n.name) + ",\"inputs\":[";
      for (size_t k = 0; k < n.inputs.size(); ++k)
        out += (k ? "," : "") + gptrt::json::quote(n.inputs[k]);
      out += "],\"outputs\":[";
      for (size_t k = 0; k < n.outputs.size(); ++k)
        out += (k ? "," : "") + gptrt::json::quote(n.outputs[k]);
      out += "],\"attrs\":{";
      for (size_t k = 0; k < n.attributes.size(); ++k) {
        const auto& a = n.attributes[k];
        out += (k ? "," : "") + gptrt::json::quote(a.name) + ":";
        char buf[64];
        switch (a.type) {
          case gptrt::onnx::AttributeData::Type::kFloat:
            std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(a.f));
            out += buf;
            break;
          case gptrt::onnx::AttributeData::Type::kInt:
            out += std::to_string(a.i);
            break;
          case gptrt::onnx::AttributeData::Type::kString:
            out += gptrt::json::quote(a.s);
            break;
          case gptrt::onnx::AttributeData::Type::kTensor:
            out += tensor_json(a.t);
            break;
          case gptrt::onnx::AttributeData::Type::kInts: {
            out += "[";
            for (size_t j = 0; j < a.ints.size(); ++j)
              out += (j ? "," : "") + std::to_string(a.ints[j]);
            out += "]";
            break;
          }
          case gptrt::onnx::AttributeData::Type::kFloats: {
            out += "[";
            for (size_t j = 0; j < a.floats.size(); ++j) {
              std::snprintf(buf, sizeof buf, "%s%.9g", j ? "," : "",
                            static_cast<double>(a.floats[j]));
              out += buf;
            }
            out += "]";
            break;
          }
          default:
            out += "null";
        }
      }
      out += "}}";
    }
    out += "],\"initializers\":[";
    for (size_t i = 0; i < m.graph.initializers.size(); ++i)
      out += (i ? "," : "") + tensor_json(m.graph.initializers[i]);
    out += "]}";
    std::printf("%s\n", out.c_str());
  } catch (const gptrt::Error& e) {
    std::fprintf(stderr, "onnx_dump: %s\n", e.what());
    return 1;
  }
  return 0;
}

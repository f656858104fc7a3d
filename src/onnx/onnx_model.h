// The parts of an ONNX ModelProto gptrt reads, decoded from the wire format. Tensor payloads in
// raw_data, packed float_data or external data are views into memory-mapped files.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gptrt/tensor.h"
#include "platform/platform.h"

namespace gptrt::onnx {

/// TensorProto with its data resolved to a Tensor (view or decoded copy).
struct TensorData {
  std::string name;
  Tensor value;
  bool external = false;  // payload came from an external data file
};

struct GraphData;

/// AttributeProto.
struct AttributeData {
  enum class Type {
    kUndefined = 0,
    kFloat = 1,
    kInt = 2,
    kString = 3,
    kTensor = 4,
    kGraph = 5,
    kFloats = 6,
    kInts = 7,
    kStrings = 8,
    kTensors = 9,
    kGraphs = 10
  };
  std::string name;
  Type type = Type::kUndefined;
  float f = 0;
  int64_t i = 0;
  std::string s;
  TensorData t;
  std::vector<float> floats;
  std::vector<int64_t> ints;
  std::vector<std::string> strings;
  std::shared_ptr<const GraphData> graph;  // a GRAPH attribute's subgraph (If's branches)
  std::string ref_attr_name;
};

/// NodeProto.
struct NodeData {
  std::string name, op_type, domain;
  std::vector<std::string> inputs, outputs;
  std::vector<AttributeData> attributes;
};

/// One TensorShapeProto.Dimension: a value, a symbolic name, or neither (unknown).
struct DimData {
  int64_t value = -1;
  std::string param;
};

/// ValueInfoProto (tensor types only).
struct ValueInfoData {
  std::string name;
  int32_t elem_type = 0;
  bool has_shape = false;
  std::vector<DimData> dims;
  bool is_tensor = true;  // false for sequence/map/optional types
};

/// GraphProto.
struct GraphData {
  std::string name;
  std::vector<NodeData> nodes;
  std::vector<TensorData> initializers;
  std::vector<ValueInfoData> inputs, outputs, value_infos;
  size_t sparse_initializers = 0;
};

/// ModelProto.
struct ModelData {
  int64_t ir_version = 0;
  std::string producer_name, producer_version, domain;
  std::map<std::string, int64_t> opsets;  // domain ("" = ai.onnx) -> version
  GraphData graph;
  size_t functions = 0;
  std::vector<std::shared_ptr<const platform::MappedFile>> files;  // keep views alive
};

/// Maps and decodes `path`. External data files are resolved relative to its directory.
/// Throws gptrt::Error for a malformed file, a missing or short external data file.
ModelData read_model(const std::string& path);

/// Decodes a model from bytes in memory (kept alive by `keep`); `name` is used in errors and
/// `dir` to resolve external data.
ModelData read_model_bytes(const uint8_t* data, size_t size, const std::string& name,
                           const std::string& dir,
                           std::shared_ptr<const platform::MappedFile> keep);

}  // namespace gptrt::onnx

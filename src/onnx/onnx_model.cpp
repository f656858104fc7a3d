#include "onnx/onnx_model.h"

#include <cstring>
#include <filesystem>

#include "core/checked.h"
#include "core/half.h"
#include "gptrt/error.h"
#include "onnx/wire.h"

namespace gptrt::onnx {
namespace {

constexpr int kMaxDepth = 32;  // graphs nested in attributes

struct Ctx {
  WireSource source;
  std::string dir;
  std::shared_ptr<const platform::MappedFile> keep;
  std::map<std::string, std::shared_ptr<const platform::MappedFile>> external_files;
  ModelData* model = nullptr;
};

std::string as_string(const WireReader& r, const Field& f) {
  if (f.type != WireType::kBytes) r.fail_field(f, "expected a string");
  return std::string(f.bytes());
}

int64_t as_int(const WireReader& r, const Field& f) {
  if (f.type != WireType::kVarint) r.fail_field(f, "expected a varint");
  return static_cast<int64_t>(f.varint);
}

WireReader sub(const WireReader& r, const Field& f, const std::string& what) {
  if (f.type != WireType::kBytes) r.fail_field(f, "expected an embedded message");
  return WireReader(r.source(), f.data, f.size, what);
}

float bits_to_float(uint64_t bits) {
  uint32_t b = static_cast<uint32_t>(bits);
  float v;
  std::memcpy(&v, &b, 4);
  return v;
}

// Repeated fixed32 floats: packed payloads are returned as one span, unpacked ones appended.
void read_floats(const WireReader& r, const Field& f, std::vector<float>& out) {
  if (f.type == WireType::kFixed32) {
    out.push_back(bits_to_float(f.varint));
  } else if (f.type == WireType::kBytes) {
    if (f.size % 4) r.fail_field(f, "packed float list length is not a multiple of 4");
    size_t n = f.size / 4;
    size_t old = out.size();
    out.resize(old + n);
    if (f.size)
      std::memcpy(out.data() + old, f.data, f.size);  // an empty field may have no data pointer
  } else {
    r.fail_field(f, "expected floats");
  }
}

std::string external_path(const Ctx& ctx, const std::string& location, const std::string& tensor) {
  std::filesystem::path loc(location);
  bool escapes = loc.is_absolute();
  for (const auto& part : loc) escapes = escapes || part == "..";
  if (escapes || location.empty()) {
    throw Error(ErrorCode::kParseError, "'" + ctx.source.file + "': tensor '" + tensor +
                                            "' has external data location '" + location +
                                            "', which is not a relative path inside the model's "
                                            "directory; move the data file next to the model");
  }
  std::filesystem::path path = std::filesystem::path(ctx.dir) / loc;
  // A link inside the folder may still point out of it (link -> /etc/passwd): the real path
  // must stay in the model's real folder.
  std::error_code ec;
  std::filesystem::path real = std::filesystem::weakly_canonical(path, ec);
  std::filesystem::path dir = std::filesystem::weakly_canonical(
      ctx.dir.empty() ? std::filesystem::path(".") : std::filesystem::path(ctx.dir), ec);
  auto rel = real.lexically_relative(dir);
  if (!ec && (rel.empty() || *rel.begin() == ".."))
    throw Error(ErrorCode::kParseError,
                "'" + ctx.source.file + "': tensor '" + tensor + "' has external data '" +
                    location + "', which leads out of the model's directory (to '" + real.string() +
                    "'); external data must be a file in that directory");
  return path.string();
}

TensorData read_tensor(Ctx& ctx, WireReader r) {
  TensorData t;
  Shape dims;
  int32_t data_type = 0;
  const uint8_t* raw = nullptr;
  size_t raw_size = 0;
  bool has_raw = false;
  std::vector<float> floats;
  std::vector<int64_t> int64s;
  std::vector<int64_t> int32s;  // int32_data holds int32/int16/int8/uint8/bool/float16 values
  std::vector<double> doubles;
  std::map<std::string, std::string> external;
  int64_t data_location = 0;
  Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 1:
        read_packed_varints(r, f, [&](uint64_t v) { dims.push_back(static_cast<int64_t>(v)); });
        break;
      case 2:
        data_type = static_cast<int32_t>(as_int(r, f));
        break;
      case 4:
        read_floats(r, f, floats);
        break;
      case 5:
        read_packed_varints(r, f, [&](uint64_t v) {
          int32s.push_back(static_cast<int64_t>(static_cast<int32_t>(v)));
        });
        break;
      case 7:
        read_packed_varints(r, f, [&](uint64_t v) { int64s.push_back(static_cast<int64_t>(v)); });
        break;
      case 8:
        t.name = as_string(r, f);
        break;
      case 9:
        if (f.type != WireType::kBytes) r.fail_field(f, "raw_data is not bytes");
        raw = f.data;
        raw_size = f.size;
        has_raw = true;
        break;
      case 10:
        if (f.type == WireType::kFixed64) {
          double d;
          std::memcpy(&d, &f.varint, 8);
          doubles.push_back(d);
        } else if (f.type == WireType::kBytes && f.size % 8 == 0) {
          size_t old = doubles.size();
          doubles.resize(old + f.size / 8);
          if (f.size) std::memcpy(doubles.data() + old, f.data, f.size);
        } else {
          r.fail_field(f, "bad double_data");
        }
        break;
      case 13: {
        WireReader e = sub(r, f, "external_data of tensor '" + t.name + "'");
        std::string key, value;
        Field g;
        while (e.next(g)) {
          if (g.number == 1) key = as_string(e, g);
          if (g.number == 2) value = as_string(e, g);
        }
        external[key] = value;
        break;
      }
      case 14:
        data_location = as_int(r, f);
        break;
      default:
        break;  // segment, string_data, uint64_data, doc_string, metadata: not used
    }
  }
  std::string where = "'" + ctx.source.file + "': tensor '" + t.name + "'";
  if (!dtype_is_known(data_type)) {
    throw Error(ErrorCode::kUnsupported, where + " has data type " + std::to_string(data_type) +
                                             ", which gptrt does not support (float32, float16, "
                                             "bfloat16, float64, int64, int32, int8, uint8, bool)");
  }
  for (int64_t d : dims) {
    if (d < 0 || d > (int64_t{1} << 40))
      throw Error(ErrorCode::kParseError, where + " has invalid dimension " + std::to_string(d));
  }
  DType dtype = static_cast<DType>(data_type);
  const int64_t numel = checked::numel(dims, where);
  const auto nbytes = static_cast<size_t>(checked::bytes(dims, dtype, where));
  auto size_error = [&](size_t found, const char* source) {
    return Error(ErrorCode::kParseError,
                 where + " " + shape_str(dims) + " " + dtype_name(dtype) + " needs " +
                     std::to_string(nbytes) + " bytes but its " + source + " holds " +
                     std::to_string(found) + "; the file is truncated or corrupt");
  };

  if (data_location == 1) {
    std::string location = external["location"];
    // offset and length: decimal digits only, within int64 (not "-5", not "12abc").
    auto number = [&](const char* key, int64_t fallback) {
      auto it = external.find(key);
      if (it == external.end()) return fallback;
      const std::string& v = it->second;
      uint64_t n = 0;
      bool ok = !v.empty() && v.size() <= 18;
      for (char c : v) {
        ok = ok && c >= '0' && c <= '9';
        n = n * 10 + static_cast<uint64_t>(c - '0');
      }
      if (!ok)
        throw Error(ErrorCode::kParseError, where + " has external data " + key + " '" + v +
                                                "'; expected a non-negative decimal number");
      return static_cast<int64_t>(n);
    };
    const int64_t offset = number("offset", 0);
    int64_t length = number("length", -1);
    std::string path = external_path(ctx, location, t.name);
    auto it = ctx.external_files.find(path);
    if (it == ctx.external_files.end()) {
      if (!std::filesystem::exists(path)) {
        throw Error(ErrorCode::kIoError, where + " keeps its data in external file '" + location +
                                             "', which is missing (looked for '" + path +
                                             "'); copy the .data file next to the model");
      }
      it = ctx.external_files.emplace(path, platform::MappedFile::open(path)).first;
      ctx.model->files.push_back(it->second);
    }
    const auto& file = it->second;
    if (length < 0) length = static_cast<int64_t>(nbytes);
    if (static_cast<uint64_t>(offset) > file->size() ||
        static_cast<uint64_t>(length) > file->size() - static_cast<uint64_t>(offset)) {
      throw Error(ErrorCode::kParseError,
                  where + " reads bytes [" + std::to_string(offset) + ", " +
                      std::to_string(offset + length) + ") of '" + location + "', which has only " +
                      std::to_string(file->size()) +
                      " bytes; the data file is truncated or belongs to another model");
    }
    if (static_cast<size_t>(length) != nbytes)
      throw size_error(static_cast<size_t>(length), "external data length");
    t.value = Tensor::view_or_copy(dtype, dims, file->data() + offset, file);
    t.external = true;
    return t;
  }
  if (has_raw) {
    if (raw_size != nbytes) throw size_error(raw_size, "raw_data");
    t.value = Tensor::view_or_copy(dtype, dims, raw, ctx.keep);
    return t;
  }
  // The typed field's element count is checked before any memory is taken for the tensor (a
  // corrupt dims field must say so, not run out of memory).
  size_t have = 0;
  const char* field = "int32_data";
  switch (dtype) {
    case DType::kFloat32:
      have = floats.size(), field = "float_data";
      break;
    case DType::kFloat64:
      have = doubles.size(), field = "double_data";
      break;
    case DType::kInt64:
      have = int64s.size(), field = "int64_data";
      break;
    default:
      have = int32s.size();
  }
  if (have != static_cast<size_t>(numel)) throw size_error(have * dtype_size(dtype), field);
  Tensor value(dtype, dims);
  switch (dtype) {
    case DType::kFloat32:
      if (numel) std::memcpy(value.raw_mut(), floats.data(), nbytes);
      break;
    case DType::kFloat64:
      if (numel) std::memcpy(value.raw_mut(), doubles.data(), nbytes);
      break;
    case DType::kInt64:
      if (numel) std::memcpy(value.raw_mut(), int64s.data(), nbytes);
      break;
    case DType::kInt32: {
      auto* p = value.data_mut<int32_t>();
      for (int64_t i = 0; i < numel; ++i) p[i] = static_cast<int32_t>(int32s[i]);
      break;
    }
    case DType::kInt8:
    case DType::kUInt8:
    case DType::kBool: {
      auto* p = value.data_mut<uint8_t>();
      for (int64_t i = 0; i < numel; ++i) p[i] = static_cast<uint8_t>(int32s[i]);
      break;
    }
    case DType::kFloat16:
    case DType::kBFloat16: {
      auto* p = value.data_mut<uint16_t>();
      for (int64_t i = 0; i < numel; ++i) p[i] = static_cast<uint16_t>(int32s[i]);
      break;
    }
    default:
      throw Error(ErrorCode::kUnsupported, where + " has unsupported data type");
  }
  t.value = value;
  return t;
}

ValueInfoData read_value_info(WireReader r) {
  ValueInfoData v;
  Field f;
  while (r.next(f)) {
    if (f.number == 1) {
      v.name = as_string(r, f);
    } else if (f.number == 2) {
      WireReader type = sub(r, f, "type of '" + v.name + "'");
      Field tf;
      bool tensor = false;
      while (type.next(tf)) {
        if (tf.number != 1) continue;  // sequence_type, map_type, ...: not a tensor
        tensor = true;
        WireReader tt = sub(type, tf, "tensor type of '" + v.name + "'");
        Field g;
        while (tt.next(g)) {
          if (g.number == 1) {
            v.elem_type = static_cast<int32_t>(as_int(tt, g));
          } else if (g.number == 2) {
            v.has_shape = true;
            WireReader shape = sub(tt, g, "shape of '" + v.name + "'");
            Field d;
            while (shape.next(d)) {
              if (d.number != 1) continue;
              WireReader dim = sub(shape, d, "dimension of '" + v.name + "'");
              DimData dd;
              Field h;
              while (dim.next(h)) {
                if (h.number == 1) dd.value = as_int(dim, h);
                if (h.number == 2) dd.param = as_string(dim, h);
              }
              v.dims.push_back(dd);
            }
          }
        }
      }
      v.is_tensor = tensor;
    }
  }
  return v;
}

GraphData read_graph(Ctx& ctx, WireReader r, int depth);

AttributeData read_attribute(Ctx& ctx, WireReader r, int depth) {
  AttributeData a;
  Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 1:
        a.name = as_string(r, f);
        break;
      case 2:
        if (f.type != WireType::kFixed32) r.fail_field(f, "attribute float is not fixed32");
        a.f = bits_to_float(f.varint);
        break;
      case 3:
        a.i = as_int(r, f);
        break;
      case 4:
        a.s = as_string(r, f);
        break;
      case 5:
        a.t = read_tensor(ctx, sub(r, f, "tensor of attribute '" + a.name + "'"));
        break;
      case 6:
        if (depth >= kMaxDepth) r.fail_field(f, "graphs nested too deeply");
        a.graph = std::make_shared<const GraphData>(
            read_graph(ctx, sub(r, f, "subgraph of attribute '" + a.name + "'"), depth + 1));
        break;
      case 7:
        read_floats(r, f, a.floats);
        break;
      case 8:
        read_packed_varints(r, f, [&](uint64_t v) { a.ints.push_back(static_cast<int64_t>(v)); });
        break;
      case 9:
        a.strings.push_back(as_string(r, f));
        break;
      case 20:
        a.type = static_cast<AttributeData::Type>(as_int(r, f));
        break;
      case 21:
        a.ref_attr_name = as_string(r, f);
        break;
      default:
        break;
    }
  }
  return a;
}

NodeData read_node(Ctx& ctx, WireReader r, int depth) {
  NodeData n;
  Field f;
  std::vector<Field> attrs;
  while (r.next(f)) {
    switch (f.number) {
      case 1:
        n.inputs.push_back(as_string(r, f));
        break;
      case 2:
        n.outputs.push_back(as_string(r, f));
        break;
      case 3:
        n.name = as_string(r, f);
        break;
      case 4:
        n.op_type = as_string(r, f);
        break;
      case 5:
        attrs.push_back(f);
        break;
      case 7:
        n.domain = as_string(r, f);
        break;
      default:
        break;
    }
  }
  for (const Field& af : attrs) {
    n.attributes.push_back(read_attribute(
        ctx, sub(r, af, "attribute of node '" + n.name + "' (" + n.op_type + ")"), depth));
  }
  return n;
}

GraphData read_graph(Ctx& ctx, WireReader r, int depth) {
  GraphData g;
  Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 1:
        g.nodes.push_back(read_node(ctx, sub(r, f, "a node of graph '" + g.name + "'"), depth));
        break;
      case 2:
        g.name = as_string(r, f);
        break;
      case 5:
        g.initializers.push_back(read_tensor(ctx, sub(r, f, "an initializer")));
        break;
      case 11:
        g.inputs.push_back(read_value_info(sub(r, f, "a graph input")));
        break;
      case 12:
        g.outputs.push_back(read_value_info(sub(r, f, "a graph output")));
        break;
      case 13:
        g.value_infos.push_back(read_value_info(sub(r, f, "a value_info")));
        break;
      case 15:
        ++g.sparse_initializers;
        break;
      default:
        break;
    }
  }
  return g;
}

}  // namespace

ModelData read_model_bytes(const uint8_t* data, size_t size, const std::string& name,
                           const std::string& dir,
                           std::shared_ptr<const platform::MappedFile> keep) {
  ModelData m;
  Ctx ctx;
  ctx.source.file = name;
  ctx.source.file_begin = data;
  ctx.dir = dir;
  ctx.keep = keep;
  ctx.model = &m;
  if (keep) m.files.push_back(keep);
  if (size == 0) {
    throw Error(ErrorCode::kParseError, "'" + name + "' is empty, not an ONNX model");
  }
  WireReader r(ctx.source, data, size, "the ModelProto");
  Field f;
  bool has_graph = false;
  while (r.next(f)) {
    switch (f.number) {
      case 1:
        m.ir_version = as_int(r, f);
        break;
      case 2:
        m.producer_name = as_string(r, f);
        break;
      case 3:
        m.producer_version = as_string(r, f);
        break;
      case 4:
        m.domain = as_string(r, f);
        break;
      case 7:
        m.graph = read_graph(ctx, sub(r, f, "the main graph"), 0);
        has_graph = true;
        break;
      case 8: {
        WireReader o = sub(r, f, "an opset_import");
        std::string domain;
        int64_t version = 0;
        Field g;
        while (o.next(g)) {
          if (g.number == 1) domain = as_string(o, g);
          if (g.number == 2) version = as_int(o, g);
        }
        if (domain == "ai.onnx") domain = "";
        m.opsets[domain] = version;
        break;
      }
      case 25:
        ++m.functions;
        break;
      default:
        break;
    }
  }
  if (!has_graph || m.ir_version <= 0) {
    throw Error(ErrorCode::kParseError, "'" + name + "' is not an ONNX model: it has no " +
                                            (has_graph ? "ir_version" : "graph") +
                                            "; pass the .onnx file the exporter wrote");
  }
  return m;
}

ModelData read_model(const std::string& path) {
  auto file = platform::MappedFile::open(path);
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  return read_model_bytes(file->data(), file->size(), path, dir, file);
}

}  // namespace gptrt::onnx

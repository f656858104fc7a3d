// Engine file format; see docs/ENGINE_FORMAT.md.
#include <cstring>

#include "backends/backend.h"
#include "core/bytes.h"
#include "core/checked.h"
#include "gptrt/error.h"
#include "ir/describe.h"
#include "runtime/engine_impl.h"

namespace gptrt {
namespace {

constexpr char kMagic[8] = {'G', 'P', 'T', 'R', 'T', 'E', 'N', 'G'};
constexpr size_t kHeaderSize = 128;
constexpr size_t kAlign = 256;
constexpr size_t kChecksumOffset = 112;

struct Header {
  char magic[8];
  uint32_t format_version;
  uint32_t header_size;
  char gptrt_version[16];
  uint32_t backend;
  uint32_t precision;
  char target[32];
  uint64_t meta_offset, meta_size;
  uint64_t weights_offset, weights_size;
  uint64_t file_size;
  uint64_t checksum;
  uint64_t reserved;
};
static_assert(sizeof(Header) == kHeaderSize, "engine header must be 128 bytes");
static_assert(offsetof(Header, checksum) == kChecksumOffset, "checksum offset");

size_t align_up(size_t n) {
  return (n + kAlign - 1) / kAlign * kAlign;
}

void copy_fixed(char* dst, size_t n, const std::string& s) {
  std::memset(dst, 0, n);
  std::memcpy(dst, s.data(), std::min(n - 1, s.size()));
}

std::string read_fixed(const char* src, size_t n) {
  return std::string(src, strnlen(src, n));
}

uint64_t file_checksum(const uint8_t* data, size_t size) {
  uint64_t h = checksum64(data, kChecksumOffset);
  return checksum64(data + kHeaderSize, size - kHeaderSize, h);
}

void write_shape(ByteWriter& w, const Shape& s) {
  w.u64(s.size());
  for (int64_t d : s) w.i64(d);
}

Shape read_shape(ByteReader& r) {
  uint64_t n = r.count(8);
  Shape s(n);
  for (auto& d : s) d = r.i64();
  return s;
}

void write_tensor_inline(ByteWriter& w, const Tensor& t) {
  w.u32(static_cast<uint32_t>(t.dtype()));
  write_shape(w, t.shape());
  w.bytes(t.raw(), t.nbytes());
}

Tensor read_tensor_inline(ByteReader& r) {
  auto dtype_raw = static_cast<int32_t>(r.u32());
  if (!dtype_is_known(dtype_raw)) r.fail("unknown dtype " + std::to_string(dtype_raw));
  DType dt = static_cast<DType>(dtype_raw);
  Shape s = read_shape(r);
  for (int64_t d : s)
    if (d < 0) r.fail("negative dimension");
  uint64_t n = r.count(1);
  if (n != static_cast<uint64_t>(checked::bytes(s, dt, "an inline tensor")))
    r.fail("tensor size does not match its shape");
  Tensor t(dt, s);
  if (n) std::memcpy(t.raw_mut(), r.take(n), n);
  return t;
}

void write_dims(ByteWriter& w, const ir::SymShape& s) {
  w.u8(s.rank_known ? 1 : 0);
  w.u64(s.dims.size());
  for (const ir::Dim& d : s.dims) {
    w.i64(d.value);
    w.str(d.symbol);
  }
}

void write_graph(ByteWriter& w, const ir::Graph& g, std::vector<std::pair<int, size_t>>* weights);

void write_attribute(ByteWriter& w, const ir::Attribute& a) {
  w.u32(static_cast<uint32_t>(a.kind));
  switch (a.kind) {
    case ir::Attribute::Kind::kFloat:
      w.f32(a.f);
      break;
    case ir::Attribute::Kind::kInt:
      w.i64(a.i);
      break;
    case ir::Attribute::Kind::kString:
      w.str(a.s);
      break;
    case ir::Attribute::Kind::kTensor:
      write_tensor_inline(w, a.t);
      break;
    case ir::Attribute::Kind::kFloats:
      w.u64(a.floats.size());
      for (float f : a.floats) w.f32(f);
      break;
    case ir::Attribute::Kind::kInts:
      write_shape(w, a.ints);
      break;
    case ir::Attribute::Kind::kStrings:
      w.u64(a.strings.size());
      for (const std::string& s : a.strings) w.str(s);
      break;
    case ir::Attribute::Kind::kGraph:
      write_graph(w, *a.graph, nullptr);
      break;
  }
}

// Values, inputs, outputs and nodes. The main graph's constants refer to the weights section
// (offsets collected in `weights`); a subgraph's (weights == null) are written inline.
void write_graph(ByteWriter& w, const ir::Graph& g, std::vector<std::pair<int, size_t>>* weights) {
  w.u64(g.values.size());
  size_t offset = 0;
  for (size_t i = 0; i < g.values.size(); ++i) {
    const ir::Value& v = g.values[i];
    w.str(v.name);
    w.u32(static_cast<uint32_t>(v.dtype));
    write_dims(w, v.shape);
    w.u8(v.is_weight ? 1 : 0);
    if (!v.is_constant()) {
      w.u8(0);
    } else if (!weights) {
      w.u8(2);
      write_tensor_inline(w, v.constant);
    } else {
      w.u8(1);
      w.u32(static_cast<uint32_t>(v.constant.dtype()));
      write_shape(w, v.constant.shape());
      w.u64(offset);
      w.u64(v.constant.nbytes());
      weights->push_back({static_cast<int>(i), offset});
      offset = align_up(offset + v.constant.nbytes());
    }
  }
  auto write_ids = [&](const std::vector<int>& ids) {
    w.u64(ids.size());
    for (int id : ids) w.i64(id);
  };
  write_ids(g.inputs);
  write_ids(g.outputs);
  w.u64(g.nodes.size());
  for (const ir::Node& n : g.nodes) {
    w.str(n.name);
    w.str(n.op_type);
    w.str(n.domain);
    write_ids(n.inputs);
    write_ids(n.outputs);
    w.u64(n.attrs.size());
    for (const auto& [name, a] : n.attrs) {
      w.str(name);
      write_attribute(w, a);
    }
  }
}

void write_meta(ByteWriter& w, const Engine::Impl& e,
                std::vector<std::pair<int, size_t>>& weights) {
  const EngineInfo& info = e.info;
  w.u64(info.profiles.size());
  for (const OptimizationProfile& p : info.profiles) {
    w.u64(p.inputs.size());
    for (const auto& [name, range] : p.inputs) {
      w.str(name);
      write_shape(w, range.min);
      write_shape(w, range.opt);
      write_shape(w, range.max);
    }
  }
  w.u64(info.index_limits.size());
  for (const auto& [name, limit] : info.index_limits) {
    w.str(name);
    w.i64(limit);
  }
  const ir::Graph& g = e.graph;
  w.str(g.source);
  w.str(g.producer);
  w.str(g.producer_version);
  w.i64(g.ir_version);
  w.i64(g.opset);
  w.u64(info.model.notices.size());
  for (const std::string& s : info.model.notices) w.str(s);

  write_graph(w, g, &weights);
}

// Subgraphs (If's branches) nest at most this deep in an engine file.
constexpr int kMaxGraphDepth = 8;

void read_graph(ByteReader& r, ir::Graph& g, const uint8_t* weights, uint64_t weights_size,
                const std::shared_ptr<const platform::MappedFile>& file, int depth);

ir::Attribute read_attribute(ByteReader& r, int64_t opset, int depth) {
  ir::Attribute a;
  uint32_t kind = r.u32();
  if (kind > static_cast<uint32_t>(ir::Attribute::Kind::kGraph)) r.fail("unknown attribute kind");
  a.kind = static_cast<ir::Attribute::Kind>(kind);
  switch (a.kind) {
    case ir::Attribute::Kind::kFloat:
      a.f = r.f32();
      break;
    case ir::Attribute::Kind::kInt:
      a.i = r.i64();
      break;
    case ir::Attribute::Kind::kString:
      a.s = r.str();
      break;
    case ir::Attribute::Kind::kTensor:
      a.t = read_tensor_inline(r);
      break;
    case ir::Attribute::Kind::kFloats: {
      uint64_t c = r.count(4);
      for (uint64_t j = 0; j < c; ++j) a.floats.push_back(r.f32());
      break;
    }
    case ir::Attribute::Kind::kInts:
      a.ints = read_shape(r);
      break;
    case ir::Attribute::Kind::kStrings: {
      uint64_t c = r.count(8);
      for (uint64_t j = 0; j < c; ++j) a.strings.push_back(r.str());
      break;
    }
    case ir::Attribute::Kind::kGraph: {
      if (depth >= kMaxGraphDepth) r.fail("subgraphs nested too deeply");
      ir::Graph sub;
      sub.opset = opset;  // a subgraph's ops are of its model's opset
      read_graph(r, sub, nullptr, 0, nullptr, depth + 1);
      a.graph = std::make_shared<const ir::Graph>(std::move(sub));
      break;
    }
  }
  return a;
}

void read_graph(ByteReader& r, ir::Graph& g, const uint8_t* weights, uint64_t weights_size,
                const std::shared_ptr<const platform::MappedFile>& file, int depth) {
  uint64_t n_values = r.count(8);
  for (uint64_t i = 0; i < n_values; ++i) {
    ir::Value v;
    v.name = r.str();
    v.dtype = static_cast<DType>(r.u32());
    v.shape.rank_known = r.u8() != 0;
    uint64_t nd = r.count(16);
    for (uint64_t d = 0; d < nd; ++d) {
      ir::Dim dim;
      dim.value = r.i64();
      dim.symbol = r.str();
      v.shape.dims.push_back(dim);
    }
    v.is_weight = r.u8() != 0;
    uint8_t stored = r.u8();
    if (stored == 2 && !weights) {
      v.constant = read_tensor_inline(r);
    } else if (stored == 1 && weights) {
      auto dt_raw = static_cast<int32_t>(r.u32());
      if (!dtype_is_known(dt_raw)) r.fail("constant '" + v.name + "' has an unknown dtype");
      DType dt = static_cast<DType>(dt_raw);
      Shape s = read_shape(r);
      for (int64_t d : s)
        if (d < 0) r.fail("constant '" + v.name + "' has a negative dimension");
      uint64_t off = r.u64(), nbytes = r.u64();
      if (nbytes != static_cast<uint64_t>(checked::bytes(s, dt, "constant '" + v.name + "'")) ||
          off > weights_size || nbytes > weights_size - off) {
        r.fail("constant '" + v.name + "' lies outside the weights section");
      }
      // Every constant starts on a 256-byte boundary (as written): kernels read it in place.
      if (off % kAlign != 0)
        r.fail("constant '" + v.name + "' starts at offset " + std::to_string(off) +
               " of the weights section, not on a " + std::to_string(kAlign) + "-byte boundary");
      v.constant = Tensor::view(dt, s, weights + off, file);
    } else if (stored != 0) {
      r.fail("value '" + v.name + "' has an invalid storage kind");
    }
    g.add_value(std::move(v));
  }
  auto read_ids = [&](std::vector<int>& ids, bool allow_missing) {
    uint64_t n = r.count(8);
    for (uint64_t i = 0; i < n; ++i) {
      int64_t id = r.i64();
      if (id >= static_cast<int64_t>(n_values) || id < (allow_missing ? -1 : 0))
        r.fail("value id out of range");
      ids.push_back(static_cast<int>(id));
    }
  };
  read_ids(g.inputs, false);
  read_ids(g.outputs, false);
  uint64_t n_nodes = r.count(8);
  for (uint64_t i = 0; i < n_nodes; ++i) {
    ir::Node n;
    n.name = r.str();
    n.op_type = r.str();
    n.domain = r.str();
    read_ids(n.inputs, true);
    read_ids(n.outputs, true);
    uint64_t n_attrs = r.count(12);
    for (uint64_t k = 0; k < n_attrs; ++k) {
      std::string name = r.str();
      n.attrs[name] = read_attribute(r, g.opset, depth);
    }
    g.nodes.push_back(std::move(n));
  }
}

}  // namespace

std::vector<uint8_t> write_engine_file(const Engine::Impl& e) {
  ByteWriter meta;
  std::vector<std::pair<int, size_t>> weights;
  write_meta(meta, e, weights);
  size_t meta_offset = kHeaderSize;
  size_t meta_size = meta.buffer().size();
  size_t weights_offset = align_up(meta_offset + meta_size);
  size_t weights_size = 0;
  for (const auto& [id, off] : weights)
    weights_size =
        std::max(weights_size, off + e.graph.values[static_cast<size_t>(id)].constant.nbytes());
  size_t file_size = weights_offset + align_up(weights_size);

  std::vector<uint8_t> out(file_size, 0);
  Header h{};
  std::memcpy(h.magic, kMagic, 8);
  h.format_version = kEngineFormatVersion;
  h.header_size = kHeaderSize;
  copy_fixed(h.gptrt_version, sizeof h.gptrt_version, version());
  h.backend = static_cast<uint32_t>(e.info.backend);
  h.precision = static_cast<uint32_t>(e.info.precision);
  copy_fixed(h.target, sizeof h.target, e.info.target);
  h.meta_offset = meta_offset;
  h.meta_size = meta_size;
  h.weights_offset = weights_offset;
  h.weights_size = weights_size;
  h.file_size = file_size;
  std::memcpy(out.data(), &h, kHeaderSize);
  std::memcpy(out.data() + meta_offset, meta.buffer().data(), meta_size);
  for (const auto& [id, off] : weights) {
    const Tensor& t = e.graph.values[static_cast<size_t>(id)].constant;
    if (t.nbytes()) std::memcpy(out.data() + weights_offset + off, t.raw(), t.nbytes());
  }
  uint64_t sum = file_checksum(out.data(), out.size());
  std::memcpy(out.data() + kChecksumOffset, &sum, 8);
  return out;
}

std::shared_ptr<Engine::Impl> read_engine_file(std::shared_ptr<const platform::MappedFile> file) {
  const std::string& path = file->path();
  const uint8_t* data = file->data();
  size_t size = file->size();
  auto refuse = [&](ErrorCode code, const std::string& msg) {
    return Error(code, "engine '" + path + "' " + msg);
  };
  if (size < 8 || std::memcmp(data, kMagic, 8) != 0) {
    throw refuse(ErrorCode::kParseError,
                 "is not a gptrt engine file (no GPTRTENG magic); build one with `gptrt build "
                 "--onnx=model.onnx --saveEngine=" +
                     path + "`");
  }
  if (size < kHeaderSize)
    throw refuse(ErrorCode::kParseError,
                 "is truncated: " + std::to_string(size) +
                     " bytes, shorter than its 128-byte header; rebuild it");
  Header h;
  std::memcpy(&h, data, kHeaderSize);
  if (h.format_version != kEngineFormatVersion) {
    throw refuse(ErrorCode::kEngineMismatch,
                 "has format version " + std::to_string(h.format_version) + " (written by gptrt " +
                     read_fixed(h.gptrt_version, sizeof h.gptrt_version) + "); this gptrt " +
                     version() + " reads format version " + std::to_string(kEngineFormatVersion) +
                     "; rebuild the engine from the ONNX model with this gptrt");
  }
  if (h.header_size != kHeaderSize)
    throw refuse(ErrorCode::kParseError, "is damaged: its header says the header is " +
                                             std::to_string(h.header_size) + " bytes, expected " +
                                             std::to_string(kHeaderSize) +
                                             "; rebuild it or copy it again");
  if (h.file_size != size) {
    throw refuse(ErrorCode::kParseError, "is truncated or damaged: its header says " +
                                             std::to_string(h.file_size) + " bytes, the file has " +
                                             std::to_string(size) +
                                             "; rebuild it or copy it again");
  }
  uint64_t want = file_checksum(data, size);
  if (want != h.checksum)
    throw refuse(ErrorCode::kParseError,
                 "is damaged: checksum mismatch; rebuild it or copy it again");
  bool known_backend = false;
  for (const backends::Backend* b : backends::all())
    known_backend = known_backend || static_cast<uint32_t>(b->id()) == h.backend;
  if (!known_backend || h.precision > static_cast<uint32_t>(Precision::kInt8)) {
    throw refuse(ErrorCode::kEngineMismatch,
                 "names an unknown backend or precision; it was written by a newer gptrt");
  }
  Backend backend = static_cast<Backend>(h.backend);
  if (!backend_available(backend)) {
    throw refuse(ErrorCode::kEngineMismatch,
                 std::string("was built for the ") + backend_name(backend) + " backend (target " +
                     read_fixed(h.target, sizeof h.target) +
                     "), which this build of gptrt cannot run; rebuild it with "
                     "`gptrt build --backend reference` or use a gptrt built with that backend");
  }
  if (h.meta_offset != kHeaderSize || h.meta_size > size - kHeaderSize ||
      h.weights_offset < h.meta_offset + h.meta_size || h.weights_offset > size ||
      h.weights_size > size - h.weights_offset || h.weights_offset % kAlign != 0) {
    throw refuse(ErrorCode::kParseError, "has an inconsistent section table; rebuild it");
  }

  auto e = std::make_shared<Engine::Impl>();
  e->files.push_back(file);
  EngineInfo& info = e->info;
  info.format_version = h.format_version;
  info.gptrt_version = read_fixed(h.gptrt_version, sizeof h.gptrt_version);
  info.backend = backend;
  info.precision = static_cast<Precision>(h.precision);
  ByteReader r(data + h.meta_offset, h.meta_size, "engine '" + path + "' metadata");
  info.target = read_fixed(h.target, sizeof h.target);
  uint64_t n_profiles = r.count(8);
  for (uint64_t p = 0; p < n_profiles; ++p) {
    OptimizationProfile prof;
    uint64_t n = r.count(8);
    for (uint64_t i = 0; i < n; ++i) {
      std::string name = r.str();
      ShapeRange range;
      range.min = read_shape(r);
      range.opt = read_shape(r);
      range.max = read_shape(r);
      prof.inputs.emplace_back(name, range);
    }
    info.profiles.push_back(prof);
  }
  uint64_t n_limits = r.count(16);
  for (uint64_t i = 0; i < n_limits; ++i) {
    std::string name = r.str();
    info.index_limits[name] = r.i64();
  }
  ir::Graph& g = e->graph;
  g.source = r.str();
  g.producer = r.str();
  g.producer_version = r.str();
  g.ir_version = r.i64();
  g.opset = r.i64();
  std::vector<std::string> notices;
  uint64_t n_notices = r.count(8);
  for (uint64_t i = 0; i < n_notices; ++i) notices.push_back(r.str());

  read_graph(r, g, data + h.weights_offset, h.weights_size, file, 0);
  if (!r.at_end()) r.fail("unexpected bytes after the node table");
  info.model = ir::describe_graph(g);
  info.model.notices = notices;
  return e;
}

}  // namespace gptrt

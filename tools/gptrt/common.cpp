#include "common.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>

#include "core/half.h"
#include "core/npy.h"
#include "gptrt/error.h"
#include "platform/platform.h"

namespace gptrt::cli {
namespace {

[[noreturn]] void bad(const std::string& msg) {
  throw Error(ErrorCode::kInvalidArgument, msg);
}

std::string trim_quotes(std::string s) {
  if (s.size() >= 2 && (s.front() == '\'' || s.front() == '"') && s.back() == s.front())
    s = s.substr(1, s.size() - 2);
  return s;
}

}  // namespace

std::vector<std::string> split_list(const std::string& text, char sep) {
  std::vector<std::string> items;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(sep, start);
    if (end == std::string::npos) end = text.size();
    if (end > start) items.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return items;
}

void log_info(const std::string& msg) {
  std::printf("[I] %s\n", msg.c_str());
}
void log_warning(const std::string& msg) {
  std::printf("[W] %s\n", msg.c_str());
}

std::vector<std::pair<std::string, Shape>> parse_shapes(const std::string& text,
                                                        const std::string& flag) {
  std::vector<std::pair<std::string, Shape>> out;
  for (const std::string& item : split_list(text, ',')) {
    size_t colon = item.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      bad("--" + flag + ": '" + item + "' is not NAME:DIMS (e.g. input_ids:1x12)");
    }
    std::string name = trim_quotes(item.substr(0, colon));
    std::string dims = item.substr(colon + 1);
    Shape shape;
    // Empty parts ("1xx12", "x12") are errors, so split by hand rather than with split_list.
    std::vector<std::string> parts;
    for (size_t p = 0, x; p <= dims.size(); p = x + 1) {
      x = std::min(dims.find('x', p), dims.size());
      parts.push_back(dims.substr(p, x - p));
    }
    for (const std::string& d : parts) {
      char* end = nullptr;
      long long v = std::strtoll(d.c_str(), &end, 10);
      if (d.empty() || *end != '\0' || v < 0 || v > (1LL << 31)) {
        bad("--" + flag + ": dimensions of '" + name +
            "' must be non-negative integers joined by 'x' (e.g. 8x12), found '" + dims + "'");
      }
      shape.push_back(v);
    }
    for (const auto& [n, s] : out) {
      if (n == name) bad("--" + flag + " gives input '" + name + "' twice");
    }
    out.emplace_back(name, shape);
  }
  if (out.empty()) bad("--" + flag + " is empty; expected NAME:DIMS[,NAME:DIMS...]");
  return out;
}

std::vector<OptimizationProfile> profiles_from_flags(const Args& args) {
  std::vector<std::string> mins = args.all("minShapes"), opts = args.all("optShapes"),
                           maxs = args.all("maxShapes");
  if (mins.empty() && opts.empty() && maxs.empty()) return {};
  if (mins.size() != maxs.size() || (!opts.empty() && opts.size() != mins.size())) {
    bad("give --minShapes and --maxShapes (and optionally --optShapes) once per optimization "
        "profile; found " +
        std::to_string(mins.size()) + " --minShapes, " + std::to_string(opts.size()) +
        " --optShapes, " + std::to_string(maxs.size()) + " --maxShapes");
  }
  std::vector<OptimizationProfile> profiles;
  for (size_t k = 0; k < mins.size(); ++k) {
    auto lo = parse_shapes(mins[k], "minShapes");
    auto hi = parse_shapes(maxs[k], "maxShapes");
    auto op = opts.empty() ? hi : parse_shapes(opts[k], "optShapes");
    OptimizationProfile p;
    for (const auto& [input, shape] : lo) {
      const std::string& name = input;  // (clang 14 lets lambdas capture no structured binding)
      auto find = [&](const std::vector<std::pair<std::string, Shape>>& v, const char* flag) {
        for (const auto& [n, s] : v) {
          if (n == name) return s;
        }
        bad("profile " + std::to_string(k) + ": input '" + name +
            "' is in --minShapes but not in --" + flag);
      };
      p.inputs.emplace_back(name, ShapeRange{shape, find(op, "optShapes"), find(hi, "maxShapes")});
    }
    for (const auto& [name, shape] : hi) {
      if (!p.find(name))
        bad("profile " + std::to_string(k) + ": input '" + name +
            "' is in --maxShapes but not in --minShapes");
    }
    profiles.push_back(p);
  }
  return profiles;
}

std::vector<FlagSpec> build_flags() {
  return {
      {"onnx", true, "ONNX model to import (external data is read from its directory)"},
      {"hf", true, "Hugging Face GPT-2 folder to import instead (config.json + model.safetensors)"},
      {"minShapes", true,
       "min shapes of a profile, e.g. input_ids:1x12,attention_mask:1x12 (repeat for more "
       "profiles)",
       true},
      {"optShapes", true, "opt shapes of a profile (default: the max shapes)", true},
      {"maxShapes", true, "max shapes of a profile", true},
      {"maxBatch", true, "default profile: largest batch (default 64)"},
      {"maxSeqLen", true, "default profile: longest sequence (default: the model's n_positions)"},
      {"backend", true,
       "target backend: cpu (default: vectorised, multi-threaded), cuda (NVIDIA GPU) or "
       "reference (plain C++, the ground truth)"},
      {"cpuIsa", true,
       "cpu backend: generic, avx2, avx512, avx512_bf16 or amx_bf16 (default: the best this CPU "
       "has; --bf16 engines take amx_bf16, else avx512_bf16, where it is there)"},
      {"fp16", false, "build FP16 (the reference backend computes FP32 and says so)"},
      {"bf16", false, "build BF16 (the reference backend computes FP32 and says so)"},
      {"tf32", false, "cuda backend: FP32 GEMMs on TF32 tensor cores"},
      {"int8", false,
       "INT8 weights (symmetric, a scale per output channel; the LM head too), FP32 activations "
       "(cuda: stored INT8, run as FP16)"},
      {"int8Group", true,
       "with --int8: a scale per output channel and N weights along K (a multiple of 16 that "
       "divides every layer's K, e.g. 16 or 32; default 0: per channel only)"},
      {"noPast", false,
       "with-past and merged exports: build the plain decoder (input_ids, attention_mask -> "
       "logits; no past inputs or presents), as generation does"},
      {"verbose", false, "print what the builder does"},
  };
}

BuildConfig build_config_from_flags(const Args& args,
                                    std::function<void(const std::string&)> notice) {
  BuildConfig c;
  c.profiles = profiles_from_flags(args);
  c.default_max_batch = args.get_int("maxBatch", 64, 1);
  c.default_max_seq_len = args.get_int("maxSeqLen", 0, 1);
  if (args.has("fp16") + args.has("bf16") + args.has("tf32") + args.has("int8") > 1)
    bad("--fp16, --bf16, --tf32 and --int8 exclude each other; pick one");
  if (args.has("fp16")) c.precision = Precision::kFp16;
  if (args.has("bf16")) c.precision = Precision::kBf16;
  if (args.has("tf32")) c.precision = Precision::kTf32;
  if (args.has("int8")) c.precision = Precision::kInt8;
  c.int8_group = args.get_int("int8Group", 0, 0);
  c.backend = backend_from_name(args.get("backend", "cpu"));
  c.cpu_isa = args.get("cpuIsa", "");
  c.keep_past = !args.has("noPast");
  c.notice = std::move(notice);
  return c;
}

std::vector<int64_t> parse_id_list(const std::string& text, const std::string& flag) {
  std::vector<int64_t> ids;
  for (std::string item : split_list(text, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    size_t used = 0;
    int64_t v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v < 0)
      bad(flag + ": '" + text + "' is not a comma-separated list of non-negative token ids");
    ids.push_back(v);
  }
  if (ids.empty()) bad(flag + ": no token ids given");
  return ids;
}

LoadedEngine load_or_build(const Args& args, const std::string& command,
                           std::function<void(const std::string&)> notice) {
  LoadedEngine r;
  int sources =
      (args.has("onnx") ? 1 : 0) + (args.has("hf") ? 1 : 0) + (args.has("loadEngine") ? 1 : 0);
  bool has_engine = args.has("loadEngine");
  if (sources != 1)
    bad("gptrt " + command +
        ": give exactly one of --onnx=MODEL.onnx, --hf=DIR or --loadEngine=ENGINE");
  if (has_engine) {
    if (!profiles_from_flags(args).empty())
      bad("--minShapes/--optShapes/--maxShapes apply when building; an engine's profiles are "
          "fixed, rebuild it to change them");
    r.source = args.get("loadEngine");
    double t0 = platform::now_seconds();
    r.engine = Engine::load(r.source);
    r.load_ms = (platform::now_seconds() - t0) * 1e3;
    return r;
  }
  r.source = args.has("hf") ? args.get("hf") : args.get("onnx");
  BuildConfig config = build_config_from_flags(args, notice);
  if (command == "generate") config.keep_past = false;  // the decoder keeps its own KV cache
  double t0 = platform::now_seconds();
  Network net = args.has("hf") ? Network::from_hf(r.source) : Network::from_onnx(r.source);
  for (const std::string& n : net.info().notices) notice(n);
  r.engine = Engine::build(net, config);
  r.build_ms = (platform::now_seconds() - t0) * 1e3;
  r.built = true;
  return r;
}

TensorMap make_inputs(const Args& args, const Engine& engine, int profile) {
  const EngineInfo& info = engine.info();
  TensorMap inputs;
  if (args.has("loadInputs")) {
    for (const std::string& item : split_list(args.get("loadInputs"), ',')) {
      size_t colon = item.find(':');
      if (colon == std::string::npos) bad("--loadInputs: '" + item + "' is not NAME:FILE.npy");
      std::string name = trim_quotes(item.substr(0, colon));
      Tensor t = npy::read(item.substr(colon + 1));
      const TensorDesc* desc = nullptr;
      for (const TensorDesc& d : info.model.inputs)
        if (d.name == name) desc = &d;
      // Integer files convert losslessly between int32 and int64; anything else must match.
      if (desc && t.dtype() != desc->dtype) {
        bool ints = (t.dtype() == DType::kInt32 || t.dtype() == DType::kInt64) &&
                    (desc->dtype == DType::kInt32 || desc->dtype == DType::kInt64);
        if (ints) {
          Tensor c(desc->dtype, t.shape());
          for (int64_t i = 0; i < t.numel(); ++i) {
            int64_t v = t.dtype() == DType::kInt64 ? t.data<int64_t>()[i] : t.data<int32_t>()[i];
            if (desc->dtype == DType::kInt64)
              c.data_mut<int64_t>()[i] = v;
            else
              c.data_mut<int32_t>()[i] = static_cast<int32_t>(v);
          }
          t = c;
        }
      }
      inputs[name] = t;
    }
    return inputs;
  }
  std::map<std::string, Shape> shapes;
  if (args.has("shapes")) {
    for (const auto& [name, s] : parse_shapes(args.get("shapes"), "shapes")) shapes[name] = s;
  }
  for (const auto& [name, s] : shapes) {
    bool known = false;
    for (const TensorDesc& d : info.model.inputs) known = known || d.name == name;
    if (!known) bad("--shapes names '" + name + "', which is not an input of this model");
  }
  // Every shape settled and checked against the profiles before any data is made (a batch of
  // 2^31 rows is refused here, not after filling gigabytes).
  const OptimizationProfile& prof = info.profiles.at(static_cast<size_t>(profile));
  // An input not given takes its profile's opt shape, except for the dimensions it shares by
  // name with an input that was given (`--shapes=input_ids:1x12` sizes the mask 1x12 too).
  std::map<std::string, int64_t> named;
  for (const TensorDesc& d : info.model.inputs) {
    auto it = shapes.find(d.name);
    for (size_t k = 0; it != shapes.end() && k < d.dim_names.size() && k < it->second.size(); ++k)
      if (d.dims[k] < 0 && !d.dim_names[k].empty()) named.emplace(d.dim_names[k], it->second[k]);
  }
  for (const TensorDesc& d : info.model.inputs) {
    Shape& s = shapes[d.name];
    if (s.empty()) {
      if (const ShapeRange* r = prof.find(d.name))
        s = r->opt;
      else
        bad("no shape for input '" + d.name + "'; give it with --shapes");
      for (size_t k = 0; k < d.dim_names.size() && k < s.size(); ++k) {
        auto it = d.dims[k] < 0 ? named.find(d.dim_names[k]) : named.end();
        if (it != named.end()) s[k] = it->second;
      }
    }
    if (s.size() != d.dims.size()) {
      bad("--shapes gives input '" + d.name + "' rank " + std::to_string(s.size()) +
          ", the model expects rank " + std::to_string(d.dims.size()));
    }
  }
  engine.profile_for(shapes);
  std::mt19937_64 rng(static_cast<uint64_t>(args.get_int("seed", 1234, 0)));
  for (const TensorDesc& d : info.model.inputs) {
    const Shape& s = shapes.at(d.name);
    Tensor t(d.dtype, s);
    auto limit_it = info.index_limits.find(d.name);
    bool is_mask = d.name.find("mask") != std::string::npos;
    bool is_position = d.name.find("position") != std::string::npos;
    int64_t last = s.empty() ? 1 : s.back();
    for (int64_t i = 0; i < t.numel(); ++i) {
      double v = 0;
      if (is_mask)
        v = 1;
      else if (is_position)
        v = static_cast<double>(i % std::max<int64_t>(last, 1));
      else if (limit_it != info.index_limits.end())
        v = static_cast<double>(rng() %
                                static_cast<uint64_t>(std::max<int64_t>(limit_it->second, 1)));
      else
        v = static_cast<double>(rng() % 1000) / 1000.0;
      switch (d.dtype) {
        case DType::kInt64:
          t.data_mut<int64_t>()[i] = static_cast<int64_t>(v);
          break;
        case DType::kInt32:
          t.data_mut<int32_t>()[i] = static_cast<int32_t>(v);
          break;
        case DType::kFloat32:
          t.data_mut<float>()[i] = static_cast<float>(v);
          break;
        case DType::kBool:
          t.data_mut<bool>()[i] = v != 0;
          break;
        default:
          bad(std::string("cannot generate random data of dtype ") + dtype_name(d.dtype) +
              " for input '" + d.name + "'; use --loadInputs");
      }
    }
    inputs[d.name] = t;
  }
  return inputs;
}

void export_outputs(const std::string& dir, const Engine& engine,
                    const std::vector<Tensor>& outputs) {
  platform::make_directories(dir);
  const auto& descs = engine.info().model.outputs;
  for (size_t i = 0; i < outputs.size(); ++i) {
    std::string name = descs[i].name;
    for (char& ch : name) {
      if (ch == '/' || ch == '\\' || ch == ':') ch = '_';
    }
    const Tensor& t = outputs[i];
    Tensor f = t;
    if (t.dtype() != DType::kFloat32) {
      f = Tensor(DType::kFloat32, t.shape());
      for (int64_t k = 0; k < t.numel(); ++k) {
        double v = 0;
        switch (t.dtype()) {
          case DType::kFloat64:
            v = t.data<double>()[k];
            break;
          case DType::kInt64:
            v = static_cast<double>(t.data<int64_t>()[k]);
            break;
          case DType::kInt32:
            v = t.data<int32_t>()[k];
            break;
          case DType::kBool:
            v = t.data<bool>()[k];
            break;
          case DType::kInt8:
            v = t.data<int8_t>()[k];
            break;
          case DType::kUInt8:
            v = t.data<uint8_t>()[k];
            break;
          case DType::kFloat16:
            v = half_to_float(t.data<uint16_t>()[k]);
            break;
          case DType::kBFloat16:
            v = bf16_to_float(t.data<uint16_t>()[k]);
            break;
          default:
            bad(std::string("cannot export output dtype ") + dtype_name(t.dtype()));
        }
        f.data_mut<float>()[k] = static_cast<float>(v);
      }
    }
    npy::write((std::filesystem::path(dir) / (name + ".npy")).string(), f);
  }
}

// A tokenizer from --tokenizer, else next to the model (the --hf folder or the ONNX file's).
std::unique_ptr<tokenizer::Tokenizer> find_tokenizer(const Args& args) {
  namespace fs = std::filesystem;
  if (args.has("tokenizer"))
    return std::make_unique<tokenizer::Tokenizer>(
        tokenizer::Tokenizer::load(args.get("tokenizer")));
  std::string dir = args.has("hf")     ? args.get("hf")
                    : args.has("onnx") ? fs::path(args.get("onnx")).parent_path().string()
                                       : fs::path(args.get("loadEngine")).parent_path().string();
  if (dir.empty()) dir = ".";
  if (fs::exists(dir + "/tokenizer.json") ||
      (fs::exists(dir + "/vocab.json") && fs::exists(dir + "/merges.txt")))
    return std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::load(dir));
  return nullptr;
}

}  // namespace gptrt::cli

// `gptrt bench`: the recipe's tables for gptrt and every peer installed (bench/), same weights,
// same inputs, accuracy against PyTorch FP32 on every row. Writes results.{json,csv,md} and
// latency.png through bench/report.py.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "backends/cpu/gemm.h"
#include "backends/cpu/thread_pool.h"
#include "common.h"
#include "core/json.h"
#include "core/npy.h"
#include "core/stats.h"
#include "gptrt/error.h"
#include "gptrt/generate.h"
#include "platform/compiler.h"
#include "platform/platform.h"
#include "runtime/engine_impl.h"

#ifndef GPTRT_SOURCE_DIR
#define GPTRT_SOURCE_DIR "."
#endif

namespace gptrt::cli {
namespace {

// Where the Python harness (bench/*.py, scripts/export_onnx.py) is: $GPTRT_DATA_DIR, else
// share/gptrt next to the binary's bin/ (an installed gptrt, or the wheel's), else the source
// tree this binary was built from.
std::string harness_dir() {
  namespace fs = std::filesystem;
  std::vector<std::string> tried;
  auto has_it = [&](const std::string& dir) {
    tried.push_back(dir);
    return !dir.empty() && fs::exists(fs::path(dir) / "bench" / "run_peers.py");
  };
  if (const char* env = std::getenv("GPTRT_DATA_DIR"); env && *env) {
    if (has_it(env)) return env;  // (asked for by name: not silently passed over)
    throw Error(ErrorCode::kIoError, std::string("GPTRT_DATA_DIR=") + env +
                                         " holds no bench/run_peers.py; point it at a folder "
                                         "holding gptrt's bench/ and scripts/ (an installed "
                                         "gptrt's share/gptrt, or the source tree), or unset it");
  }
  const std::string exe = platform::executable_path();
  if (!exe.empty()) {
    const std::string share =
        (fs::path(exe).parent_path().parent_path() / "share" / "gptrt").string();
    if (has_it(share)) return share;
  }
  if (has_it(GPTRT_SOURCE_DIR)) return GPTRT_SOURCE_DIR;
  std::string where;
  for (const std::string& t : tried) where += (where.empty() ? "" : ", ") + t;
  throw Error(ErrorCode::kIoError,
              "gptrt bench needs its Python harness (bench/run_peers.py and the files beside it); "
              "looked in " +
                  where +
                  "; install gptrt (cmake --install, or pip install .) or set "
                  "GPTRT_DATA_DIR to a folder holding bench/ and scripts/");
}

std::vector<std::pair<int64_t, int64_t>> parse_grid(const std::string& text,
                                                    const std::string& flag) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const std::string& item : split_list(text, ',')) {
    size_t x = item.find('x');
    std::string left = x == std::string::npos ? "" : item.substr(0, x);
    std::string right = x == std::string::npos ? "" : item.substr(x + 1);
    char* e1 = nullptr;
    char* e2 = nullptr;
    long long b = std::strtoll(left.c_str(), &e1, 10);
    long long s = std::strtoll(right.c_str(), &e2, 10);
    if (left.empty() || right.empty() || b < 1 || s < 1 || *e1 || *e2) {
      throw Error(ErrorCode::kInvalidArgument,
                  "--" + flag + ": '" + item + "' is not BATCHxN (e.g. 8x12)");
    }
    out.emplace_back(b, s);
  }
  return out;
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

void progress(size_t i, size_t n, const std::string& label) {
  const int width = 30;
  int done = static_cast<int>(width * i / std::max<size_t>(n, 1));
  std::fprintf(stderr, "\r[%s%s] %zu/%zu %-50s",
               std::string(static_cast<size_t>(done), '#').c_str(),
               std::string(static_cast<size_t>(width - done), '.').c_str(), i, n, label.c_str());
  if (i == n) std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  return buf;
}

// Sums words [b, e) of `buf` (e - b a multiple of 16), two 64-byte lines a step, asking for each
// line 1 KiB ahead when `ahead`: with 16-byte loads (SSE2, any x86-64) or 64-byte ones (AVX-512).
uint64_t read_words_sse2(const uint64_t* buf, size_t b, size_t e, bool ahead) {
  const auto* v = reinterpret_cast<const __m128i*>(buf + b);
  const size_t n = (e - b) / 2;
  __m128i a0 = _mm_setzero_si128(), a1 = _mm_setzero_si128();
  for (size_t i = 0; i + 8 <= n; i += 8) {
    if (ahead) {  // (past the end: no fault)
      GPTRT_PREFETCH(v + i + 64, 0);
      GPTRT_PREFETCH(v + i + 68, 0);
    }
    for (size_t j = 0; j < 4; ++j) {
      a0 = _mm_add_epi64(a0, _mm_loadu_si128(v + i + j));
      a1 = _mm_add_epi64(a1, _mm_loadu_si128(v + i + 4 + j));
    }
  }
  alignas(16) uint64_t w[2];
  _mm_store_si128(reinterpret_cast<__m128i*>(w), _mm_add_epi64(a0, a1));
  return w[0] + w[1];
}
GPTRT_TARGET("avx512f")
uint64_t read_words_avx512(const uint64_t* buf, size_t b, size_t e, bool ahead) {
  const auto* v = reinterpret_cast<const __m512i*>(buf + b);
  const size_t n = (e - b) / 8;
  __m512i a0 = _mm512_set1_epi64(0), a1 = _mm512_set1_epi64(0);
  for (size_t i = 0; i + 2 <= n; i += 2) {
    if (ahead) {
      GPTRT_PREFETCH(v + i + 16, 0);
      GPTRT_PREFETCH(v + i + 17, 0);
    }
    a0 = _mm512_add_epi64(a0, _mm512_loadu_si512(v + i));
    a1 = _mm512_add_epi64(a1, _mm512_loadu_si512(v + i + 1));
  }
  alignas(64) uint64_t w[8];
  _mm512_store_si512(w, _mm512_add_epi64(a0, a1));
  uint64_t sum = 0;
  for (uint64_t x : w) sum += x;
  return sum;
}

// Memory read bandwidth (GB/s) with `threads` threads streaming a 512 MiB buffer (after one
// pass that faults it in): the best of three passes of two read loops, a plain one and one that
// also asks for each line 1 KiB ahead, with the widest loads the CPU has (on the Xeon VM's two
// cores 27-30 against 33-35 GB/s in the same minute; 16-byte loads got 28-31 either way). The
// floor a forward pass's weight reads are held to. The buffer is a tensor, so it lies on the
// pages the engine's weights get (huge pages where the OS gives them: on the Xeon VM the plain
// loop got 26 GB/s on 4 KiB pages and 30 on 2 MiB ones).
double measure_read_bandwidth(int threads) {
  const size_t words = (size_t{512} << 20) / sizeof(uint64_t);
  Tensor storage(DType::kInt64, {static_cast<int64_t>(words)});
  uint64_t* buf = static_cast<uint64_t*>(storage.raw_mut());
  std::fill(buf, buf + words, uint64_t{1});
  auto read = platform::cpu_info().avx512f ? read_words_avx512 : read_words_sse2;
  cpu::ThreadPool pool(threads);
  std::vector<uint64_t> sums(static_cast<size_t>(pool.size()) * 8);
  double best = 0;
  for (bool ahead : {false, true}) {
    for (int rep = 0; rep < 4; ++rep) {
      double t0 = platform::now_seconds();
      const int64_t tasks = pool.size();
      const size_t per = words / static_cast<size_t>(tasks) / 16 * 16;
      pool.parallel_for(tasks, [&](int64_t t) {
        const size_t b = per * static_cast<size_t>(t);
        sums[static_cast<size_t>(t) * 8] = read(buf, b, b + per, ahead);
      });
      double s = platform::now_seconds() - t0;
      const double bytes = static_cast<double>(per * static_cast<size_t>(tasks) * 8);
      if (rep > 0) best = std::max(best, bytes / s / 1e9);
    }
    if (sums[0] == 0) log_warning("read-bandwidth probe read zeros");
  }
  return best;
}

// The ONEDNN_MAX_CPU_ISA value that caps the CPU peers for `--peerIsa` (gptrt's --cpuIsa names),
// or, without the flag, the one the user's environment already sets ("" for none).
std::string peer_isa_cap(const std::string& flag) {
  if (flag.empty()) {
    const char* env = std::getenv("ONEDNN_MAX_CPU_ISA");
    return env ? env : "";
  }
  static const std::pair<const char*, const char*> kCaps[] = {{"avx2", "AVX2"},
                                                              {"avx512", "AVX512_CORE"},
                                                              {"avx512_bf16", "AVX512_CORE_BF16"},
                                                              {"amx_bf16", "AVX512_CORE_AMX"}};
  for (const auto& [name, cap] : kCaps)
    if (flag == name) return cap;
  throw Error(ErrorCode::kInvalidArgument,
              "gptrt bench: --peerIsa is '" + flag +
                  "'; it takes avx2, avx512, avx512_bf16 or amx_bf16 (leave it out for no cap)");
}

// How a cpu BF16 engine on avx512_bf16 runs GEMMs of more than a few rows (dot products or
// weights widened to FP32: by CPU vendor, GPTRT_CPU_BF16_DOTS forces either), for the report.
std::string bf16_gemm_form(const Engine& engine) {
  const EngineInfo& info = engine.info();
  if (info.backend != Backend::kCpu || info.precision != Precision::kBf16 ||
      info.target != cpu::isa_name(cpu::Isa::kAvx512Bf16))
    return "";
  return cpu::bf16_dot_blocks() ? " (vdpbf16ps dot products)" : " (weights widened to FP32)";
}

// Bytes of weights a decode step reads from `engine`: every constant its nodes read, once each,
// at the precision the engine stores it (FP32, BF16 or INT8 with its scales), except the
// embedding tables, of which a step reads one row. A tied token table counts once, as the LM
// head that reads it whole.
int64_t step_weight_bytes(const Engine& engine) {
  const ir::Graph& g = engine.impl().graph;
  std::set<int> seen, tables;
  for (const ir::Node& n : g.nodes)
    if (n.op_type == "Embedding")
      for (size_t k = 2; k < n.inputs.size(); ++k) tables.insert(n.inputs[k]);
  int64_t bytes = 0;
  for (const ir::Node& n : g.nodes)
    for (int id : n.inputs) {
      if (id < 0 || !seen.insert(id).second) continue;
      const ir::Value& v = g.values[static_cast<size_t>(id)];
      if (!v.is_constant() || (n.op_type == "Embedding" && tables.count(id))) {
        seen.erase(id);  // (a table read whole by another node counts there)
        continue;
      }
      bytes += static_cast<int64_t>(v.constant.nbytes());
    }
  return bytes;
}

}  // namespace

int cmd_bench(const std::vector<std::string>& argv) {
  std::vector<FlagSpec> specs = {
      {"onnx", true, "ONNX model (gptrt, ONNX Runtime, TensorRT run it)"},
      {"hf", true,
       "Hugging Face folder (PyTorch runs it; exported to ONNX when --onnx is not given)"},
      {"shapes", true, "forward grid BxS,... (default the recipe's 1x12,8x12,16x12,8x8,8x16,8x32)"},
      {"generate", true,
       "generation grid BATCHxNEW_TOKENS,... from a 12-token prompt (default none)"},
      {"decode", true,
       "decode-step table: batch sizes, comma-separated, 12-token prompt then 32 steps (default "
       "none; e.g. 1,8,64)"},
      {"frameworks", true,
       "comma list of "
       "gptrt,pytorch,torch.compile,onnxruntime,openvino,llama.cpp,ctranslate2,tensorrt "
       "(default all)"},
      {"precision", true, "gptrt's: fp32 (default), fp16, bf16 or int8 (cpu: INT8 weights)"},
      {"int8Group", true,
       "with --precision int8: a scale per output channel and N weights along K (0: per channel, "
       "the default)"},
      {"threads", true, "CPU threads for gptrt and the CPU peers (default: all cores)"},
      {"backend", true,
       "gptrt's backend: cpu (default), cuda (rows time the GPU compute, CUDA graphs on) or "
       "reference"},
      {"device", true, "cpu (default) or cuda: where the peers run"},
      {"cpuIsa", true,
       "gptrt's cpu backend ISA: generic, avx2, avx512, avx512_bf16 or amx_bf16 (default: the "
       "best this CPU has for the precision)"},
      {"peerIsa", true,
       "cap the CPU peers' instruction set where they take a cap (ONEDNN_MAX_CPU_ISA: OpenVINO "
       "and PyTorch's oneDNN kernels): avx2, avx512, avx512_bf16 (BF16 dot products, no AMX) or "
       "amx_bf16 (default: no cap; ONNX Runtime, llama.cpp and CTranslate2 pick their own)"},
      {"out", true, "output folder (required)"},
      {"min-runs", true, "timed runs per row, at least (default 100)"},
      {"min-seconds", true, "timed seconds per row, at least (default 3)"},
      {"seed", true, "seed of the inputs (default 0)"},
      {"python", true, "Python interpreter for bench/ (default python3)"},
      {"help", false, "show this help"},
  };
  Args args = Args::parse(specs, argv, "bench");
  if (args.has("help")) {
    print_help(
        "usage: gptrt bench (--onnx FILE | --hf DIR) [--shapes 1x12,8x12,...] [--generate "
        "1x32,...] [--frameworks ...] --out DIR",
        specs);
    return 0;
  }
  if (!args.has("out"))
    throw Error(ErrorCode::kInvalidArgument, "gptrt bench: --out=DIR is required");
  if (!args.has("onnx") && !args.has("hf"))
    throw Error(ErrorCode::kInvalidArgument, "gptrt bench: give --onnx=FILE and/or --hf=DIR");
  std::string out = args.get("out");
  std::string py = args.get("python", "python3");
  const std::string harness = harness_dir();
  std::string bench_dir = harness + "/bench";
  log_info("bench harness: " + bench_dir);
  std::string device = args.get("device", "cpu");
  if (device != "cpu" && device != "cuda")
    throw Error(ErrorCode::kInvalidArgument, "--device must be cpu or cuda");
  std::string precision = args.get("precision", "fp32");
  if (precision != "fp32" && precision != "fp16" && precision != "bf16" && precision != "int8")
    throw Error(ErrorCode::kInvalidArgument, "--precision must be fp32, fp16, bf16 or int8");
  auto grid = parse_grid(args.get("shapes", "1x12,8x12,16x12,8x8,8x16,8x32"), "shapes");
  auto gen_grid = parse_grid(args.get("generate", ""), "generate");
  std::string frameworks =
      args.get("frameworks",
               "gptrt,pytorch,torch.compile,onnxruntime,openvino,llama.cpp,ctranslate2,tensorrt");
  for (const std::string& f : split_list(frameworks, ','))
    if (f != "gptrt" && f != "pytorch" && f != "torch.compile" && f != "onnxruntime" &&
        f != "openvino" && f != "llama.cpp" && f != "ctranslate2" && f != "tensorrt")
      throw Error(ErrorCode::kInvalidArgument,
                  "--frameworks: unknown framework '" + f +
                      "' (known: gptrt, pytorch, torch.compile, onnxruntime, openvino, llama.cpp, "
                      "ctranslate2, tensorrt)");
  const std::string peer_cap = peer_isa_cap(args.get("peerIsa", ""));
  int64_t threads = args.get_int("threads", platform::cpu_info().logical_cores, 1, kMaxThreads);
  int64_t min_runs = args.get_int("min-runs", 100, 1);
  double min_seconds = args.get_double("min-seconds", 3, 0);
  platform::make_directories(out + "/inputs");

  std::string onnx_path = args.get("onnx");
  bool have_onnx = !onnx_path.empty();
  if (!have_onnx) {
    onnx_path = out + "/model.onnx";
    std::string cmd = py + " " + shell_quote(harness + "/scripts/export_onnx.py") + " --hf " +
                      shell_quote(args.get("hf")) + " --out " + shell_quote(onnx_path);
    // The PyTorch exporter when torch and transformers are there; else gptrt writes the file
    // itself (the same ops; ONNX Runtime's rows use it), and says so in one line.
    const bool have_torch =
        std::system((py + " -c 'import torch, transformers' >/dev/null 2>&1").c_str()) == 0;
    if (have_torch) {
      log_info("exporting the Hugging Face folder to ONNX (verified against PyTorch): " + cmd);
      std::fflush(stdout);
      have_onnx = std::system(cmd.c_str()) == 0;
    }
    if (!have_onnx) {
      Network::from_hf(args.get("hf")).save_onnx(onnx_path);
      have_onnx = true;
      log_info(std::string(have_torch ? "the PyTorch export failed"
                                      : "torch/transformers are not installed") +
               ": gptrt wrote " + onnx_path +
               " from the folder itself (gptrt export-onnx); ONNX Runtime runs that file, the "
               "PyTorch rows need `pip install torch transformers`");
    }
  }

  // gptrt's engine: the default profile, wide enough for the grid.
  double t0 = platform::now_seconds();
  Network net = have_onnx ? Network::from_onnx(onnx_path) : Network::from_hf(args.get("hf"));
  BuildConfig config;
  config.backend = backend_from_name(args.get("backend", "cpu"));
  for (const auto& [b, s] : grid) config.default_max_batch = std::max(config.default_max_batch, b);
  config.precision = precision_from_name(precision);
  config.cpu_isa = args.get("cpuIsa", "");
  config.int8_group = args.get_int("int8Group", 0, 0);
  std::vector<std::string> notices;
  config.notice = [&](const std::string& s) { notices.push_back(s); };
  auto built = Engine::build(net, config);
  double build_ms = (platform::now_seconds() - t0) * 1e3;
  // Load time: the engine as a user loads it, from a file.
  built->save(out + "/gptrt.engine");
  t0 = platform::now_seconds();
  auto engine = Engine::load(out + "/gptrt.engine");
  double load_ms = (platform::now_seconds() - t0) * 1e3;
  int64_t weight_bytes = net.info().parameter_bytes;
  // gptrt's precision as its rows give it: "int8-g32" for INT8 in groups of 32.
  const std::string gptrt_precision =
      std::string(precision_name(engine->info().precision)) +
      (engine->info().precision == Precision::kInt8 && config.int8_group > 0
           ? "-g" + std::to_string(config.int8_group)
           : std::string());
  const int64_t step_bytes = step_weight_bytes(*engine);
  double read_gbs = measure_read_bandwidth(static_cast<int>(
      args.get_int("threads", platform::cpu_info().logical_cores, 1, kMaxThreads)));
  int64_t vocab = engine->info().index_limits.count("input_ids")
                      ? engine->info().index_limits.at("input_ids")
                      : 1000;

  // The same inputs for everyone: random ids, all-ones mask (the recipe's inputs).
  std::mt19937_64 rng(static_cast<uint64_t>(args.get_int("seed", 0, 0)));
  for (const auto& [b, s] : grid) {
    std::string d = out + "/inputs/" + std::to_string(b) + "x" + std::to_string(s);
    platform::make_directories(d);
    Tensor ids(DType::kInt64, {b, s}), mask(DType::kInt64, {b, s});
    for (int64_t i = 0; i < b * s; ++i) {
      ids.data_mut<int64_t>()[i] = static_cast<int64_t>(rng() % static_cast<uint64_t>(vocab));
      mask.data_mut<int64_t>()[i] = 1;
    }
    npy::write(d + "/input_ids.npy", ids);
    npy::write(d + "/attention_mask.npy", mask);
  }

  // Generation prompts (12 random ids per row), the same for gptrt and the peers.
  auto gen_prompt = [&](int64_t b, int64_t n) {
    std::string d = out + "/inputs/gen_" + std::to_string(b) + "x" + std::to_string(n);
    platform::make_directories(d);
    Tensor p(DType::kInt64, {b, 12});
    for (int64_t i = 0; i < b * 12; ++i)
      p.data_mut<int64_t>()[i] = static_cast<int64_t>(rng() % static_cast<uint64_t>(vocab));
    npy::write(d + "/prompt_ids.npy", p);
    return p;
  };
  std::vector<Tensor> gen_prompts;
  for (const auto& [b, n] : gen_grid) gen_prompts.push_back(gen_prompt(b, n));
  std::vector<int64_t> decode_batches;
  if (args.has("decode"))
    for (const std::string& item : split_list(args.get("decode"), ','))
      decode_batches.push_back(std::stoll(item));

  // Peers first: they also write the PyTorch FP32 reference logits.
  std::string shapes_text, gen_text;
  for (const auto& [b, s] : grid)
    shapes_text += (shapes_text.empty() ? "" : ",") + std::to_string(b) + "x" + std::to_string(s);
  for (const auto& [b, s] : gen_grid)
    gen_text += (gen_text.empty() ? "" : ",") + std::to_string(b) + "x" + std::to_string(s);
  std::string peers, crashed_row;
  for (const char* p : {"pytorch", "torch.compile", "onnxruntime", "openvino", "llama.cpp",
                        "ctranslate2", "tensorrt"}) {
    if (frameworks.find(p) != std::string::npos)
      peers += (peers.empty() ? "" : ",") + std::string(p);
  }
  platform::remove_file(out + "/peers.json");
  if (!peers.empty()) {
    std::string cmd =
        py + " " + shell_quote(bench_dir + "/run_peers.py") + " --work " + shell_quote(out) +
        (have_onnx ? " --onnx " + shell_quote(onnx_path) : std::string()) +
        (args.has("hf") ? " --hf " + shell_quote(args.get("hf")) : "") + " --shapes " +
        shapes_text + (gen_text.empty() ? "" : " --generate " + gen_text) + " --frameworks " +
        peers + " --precision " + precision + " --threads " + std::to_string(threads) +
        " --device " + device + " --min-runs " + std::to_string(min_runs) + " --min-seconds " +
        num(min_seconds) + " --vocab " + std::to_string(vocab) +
        (peer_cap.empty() ? "" : " --onednn-max-isa " + shell_quote(peer_cap));
    log_info("peers: " + cmd);
    std::fflush(stdout);
    const std::string step_path = out + "/peers_step.json";
    platform::remove_file(step_path);
    const int status = std::system(cmd.c_str());
    if (status != 0) {
      // The step in flight when the peers' script died (run_peers.py names it before each step):
      // a row saying so, so that the report names it instead of leaving it out.
      // (std::system's status: the shell's exit code in the high byte on POSIX, 128 + N for a
      // signal N; the code itself on Windows.)
      const int code = status > 255 ? status >> 8 : status;
      std::string where = code > 128 && code < 160
                              ? "the peers' script died of signal " + std::to_string(code - 128) +
                                    (code - 128 == 11 ? " (SIGSEGV)" : "")
                              : "the peers' script exited with " + std::to_string(code);
      if (platform::is_regular_file(step_path)) {
        std::ifstream f(step_path);
        std::string text((std::istreambuf_iterator<char>(f)), {});
        json::Value row = json::parse(text, step_path);
        const std::string what = row.value("framework", std::string("?")) + " " +
                                 row.value("precision", std::string("?"));
        where += " while running " + what + "; the peers after it did not run";
        row["status"] = "crashed: " + where;
        row["accuracy_note"] = row["status"];
        row["device"] = device;
        for (const char* k : {"median_ms", "p90_ms", "p99_ms", "max_abs_diff", "top1_agreement"})
          row[k] = nullptr;
        crashed_row = row.dump();
      }
      log_warning("bench/run_peers.py failed (" + where + "); the peers' rows are incomplete");
    }
  }

  // gptrt rows.
  int64_t gptrt_threads = threads;
  std::string rows = "[";
  auto add_row = [&](const std::string& body) {
    rows += (rows.size() > 1 ? ",\n " : "\n ") + body;
  };
  if (frameworks.find("gptrt") != std::string::npos) {
    auto ctx = engine->create_execution_context(static_cast<int>(threads));
    gptrt_threads = ctx->threads();
    bool on_gpu = backend_on_device(engine->info().backend);
    ctx->set_cuda_graphs(true);
    std::string label = std::string("gptrt-") + backend_name(engine->info().backend);
    std::string dev = on_gpu ? "cuda" : "cpu";
    for (size_t i = 0; i < grid.size(); ++i) {
      auto [b, s] = grid[i];
      progress(i, grid.size(), label + " " + std::to_string(b) + "x" + std::to_string(s));
      std::string d = out + "/inputs/" + std::to_string(b) + "x" + std::to_string(s);
      TensorMap in{{"input_ids", npy::read(d + "/input_ids.npy")},
                   {"attention_mask", npy::read(d + "/attention_mask.npy")}};
      std::vector<Tensor> res = ctx->execute(in);  // warm-up
      std::vector<double> samples;
      double start = platform::now_seconds();
      while (static_cast<int64_t>(samples.size()) < min_runs ||
             platform::now_seconds() - start < min_seconds) {
        double a = platform::now_seconds();
        res = ctx->execute(in);
        // On the GPU: the forward's GPU time (a CUDA graph replay), as the peers' rows time the
        // model with its inputs and logits on the device; the copies are reported apart.
        samples.push_back(on_gpu ? ctx->last_timings().compute_ms
                                 : (platform::now_seconds() - a) * 1e3);
      }
      LatencyStats st = compute_stats(samples);
      std::string acc =
          "\"max_abs_diff\": null, \"top1_agreement\": null, \"accuracy_note\": \"no PyTorch FP32 "
          "reference (needs --hf and torch)\"";
      if (platform::is_regular_file(d + "/reference.npy")) {
        Tensor ref = npy::read(d + "/reference.npy");
        const Tensor& got = res[0];
        double worst = 0, kl = 0;
        int64_t agree = 0, rows_n = b * s, v = got.dim(2);
        for (int64_t r = 0; r < rows_n; ++r) {
          const float* x = got.data<float>() + r * v;
          const float* y = ref.data<float>() + r * v;
          int64_t ax = 0, ay = 0;
          for (int64_t k = 0; k < v; ++k) {
            worst = std::max(worst, static_cast<double>(std::fabs(x[k] - y[k])));
            if (x[k] > x[ax]) ax = k;
            if (y[k] > y[ay]) ay = k;
          }
          agree += ax == ay;
          // KL(reference || this) of the next-token distributions, in nats (log-sum-exp).
          double zx = 0, zy = 0;
          for (int64_t k = 0; k < v; ++k) {
            zx += std::exp(static_cast<double>(x[k]) - x[ax]);
            zy += std::exp(static_cast<double>(y[k]) - y[ay]);
          }
          const double lzx = x[ax] + std::log(zx), lzy = y[ay] + std::log(zy);
          for (int64_t k = 0; k < v; ++k) {
            const double lp = y[k] - lzy, lq = x[k] - lzx;
            kl += std::exp(lp) * (lp - lq);
          }
        }
        acc = "\"max_abs_diff\": " + num(worst) + ", \"top1_agreement\": " +
              num(static_cast<double>(agree) / static_cast<double>(rows_n)) +
              ", \"mean_kl\": " + num(kl / static_cast<double>(rows_n));
      }
      add_row("{\"framework\": " + json::quote(label) + ", \"precision\": \"" + gptrt_precision +
              "\", \"device\": \"" + dev + "\", \"kind\": \"forward\", \"batch\": " +
              std::to_string(b) + ", \"seq_len\": " + std::to_string(s) +
              ", \"threads\": " + std::to_string(ctx->threads()) +
              ", \"median_ms\": " + num(st.median) + ", \"p90_ms\": " + num(st.percentile(90)) +
              ", \"p99_ms\": " + num(st.percentile(99)) + ", \"mean_ms\": " + num(st.mean) +
              ", \"runs\": " + std::to_string(st.count) + ", \"build_ms\": " + num(build_ms) +
              ", \"load_ms\": " + num(load_ms) + ", " + acc + "}");
    }
    progress(grid.size(), grid.size(), label + " done");
    // Generation: the KV-cache decoder, greedy, every row producing all its tokens.
    std::unique_ptr<Generator> gen;
    try {
      if (!gen_grid.empty() || !decode_batches.empty())
        gen = std::make_unique<Generator>(engine, static_cast<int>(threads));
    } catch (const Error& e) {
      log_warning(std::string("gptrt generation rows skipped: ") + e.what());
    }
    auto prompts_of = [](const Tensor& p) {
      std::vector<std::vector<int64_t>> r;
      for (int64_t i = 0; i < p.dim(0); ++i)
        r.emplace_back(p.data<int64_t>() + i * p.dim(1), p.data<int64_t>() + (i + 1) * p.dim(1));
      return r;
    };
    for (size_t i = 0; i < gen_grid.size() && gen; ++i) {
      auto [b, n] = gen_grid[i];
      GenerationConfig gc;
      gc.max_new_tokens = n;
      auto prompts = prompts_of(gen_prompts[i]);
      gen->generate(prompts, gc);  // warm-up
      std::vector<double> samples;
      double start = platform::now_seconds();
      while (samples.size() < 5 || platform::now_seconds() - start < min_seconds) {
        double a = platform::now_seconds();
        gen->generate(prompts, gc);
        samples.push_back((platform::now_seconds() - a) * 1e3);
      }
      LatencyStats st = compute_stats(samples);
      add_row("{\"framework\": " + json::quote(label) + ", \"precision\": \"" + gptrt_precision +
              "\", \"device\": \"" + dev + "\", \"kind\": \"generate\", \"batch\": " +
              std::to_string(b) + ", \"seq_len\": " + std::to_string(n) +
              ", \"median_ms\": " + num(st.median) + ", \"p90_ms\": " + num(st.percentile(90)) +
              ", \"runs\": " + std::to_string(st.count) +
              ", \"ms_per_token\": " + num(st.median / static_cast<double>(n)) +
              ", \"accuracy_note\": \"KV cache: prefill, then one-token decode steps\"}");
    }
    for (int64_t b : decode_batches) {
      if (!gen) break;
      Tensor p = gen_prompt(b, 32);
      GenerationConfig gc;
      gc.max_new_tokens = 33;  // 32 decode steps after the prefill's token
      auto prompts = prompts_of(p);
      std::vector<double> per_step;
      double start = platform::now_seconds();
      while (per_step.size() < 3 || platform::now_seconds() - start < min_seconds)
        per_step.push_back(gen->generate(prompts, gc).timings.decode_ms_per_token);
      LatencyStats st = compute_stats(per_step);
      // On the CPU: the step against the time its weight reads take at the bandwidth measured.
      std::string floor = on_gpu ? std::string()
                                 : ", \"step_weight_bytes\": " + std::to_string(step_bytes) +
                                       ", \"read_floor_ms\": " +
                                       num(static_cast<double>(step_bytes) / (read_gbs * 1e6));
      add_row("{\"framework\": " + json::quote(label) + ", \"precision\": \"" + gptrt_precision +
              "\", \"device\": \"" + dev + "\", \"kind\": \"decode\", \"batch\": " +
              std::to_string(b) + ", \"seq_len\": 12, \"median_ms\": " + num(st.median) +
              ", \"runs\": " + std::to_string(st.count) +
              ", \"tokens_per_s\": " + num(static_cast<double>(b) * 1e3 / st.median) + floor + "}");
    }
  }
  if (!crashed_row.empty()) add_row(crashed_row);
  rows += "\n]\n";
  {
    std::ofstream f(out + "/gptrt_rows.json");
    f << rows;
  }
  // Meta: device, versions, threads, commit, date.
  const platform::CpuInfo& cpu = platform::cpu_info();
  std::string versions =
      "{\"gptrt\": " + json::quote(std::string(version()) + " (" + build_commit() + ")");
  std::string gpu;
  if (platform::is_regular_file(out + "/peer_versions.json")) {
    std::ifstream f(out + "/peer_versions.json");
    std::string text((std::istreambuf_iterator<char>(f)), {});
    json::Value pv = json::parse(text, out + "/peer_versions.json");
    for (const auto& [k, v] : pv.items()) {
      if (!v.is_string()) continue;
      if (k == "gpu")
        gpu = v.get<std::string>();
      else
        versions += ", " + json::quote(k) + ": " + json::quote(v.get<std::string>());
    }
  }
  versions += "}";
  std::string command = "gptrt bench";
  for (const std::string& a : argv) command += " " + a;
  std::string device_name =
      device == "cuda" && !gpu.empty()
          ? gpu
          : cpu.model + " (" + std::to_string(threads) + " threads for the peers)";
  std::string meta =
      "{\"device\": " + json::quote(device) + ", \"device_name\": " + json::quote(device_name) +
      ", \"cpu\": " +
      json::quote(cpu.model + ", " + std::to_string(cpu.logical_cores) + " logical cores, " +
                  cpu.best_isa()) +
      ", \"threads\": " +
      json::quote(std::to_string(threads) + " (gptrt and the CPU peers)" +
                  (gptrt_threads < threads
                       ? "; gptrt's " + std::string(backend_name(engine->info().backend)) +
                             " backend runs on " + std::to_string(gptrt_threads)
                       : std::string())) +
      ", \"model\": " + json::quote(have_onnx ? onnx_path : args.get("hf")) +
      ", \"gptrt_build_ms\": " + num(build_ms) + ", \"gptrt_load_ms\": " + num(load_ms) +
      ", \"read_bandwidth_gbs\": " + num(read_gbs) +
      ", \"weight_bytes\": " + std::to_string(weight_bytes) +
      ", \"weight_read_floor_ms\": " + num(static_cast<double>(weight_bytes) / (read_gbs * 1e6)) +
      ", \"gptrt_commit\": " + json::quote(build_commit()) + ", \"gptrt_backend\": " +
      json::quote(std::string(backend_name(engine->info().backend)) + " " + engine->info().target +
                  " " + gptrt_precision + bf16_gemm_form(*engine)) +
      ", \"peer_isa_cap\": " +
      json::quote(peer_cap.empty()
                      ? std::string("none (each peer picks its best)")
                      : "ONEDNN_MAX_CPU_ISA=" + peer_cap +
                            " (OpenVINO and PyTorch's oneDNN kernels honour it; ONNX Runtime, "
                            "llama.cpp and CTranslate2 choose their own)") +
      ", \"versions\": " + versions + ", \"date\": " + json::quote(utc_now()) +
      ", \"command\": " + json::quote(command) + "}";
  {
    std::ofstream f(out + "/meta.json");
    f << meta << "\n";
  }
  for (const std::string& n : notices) log_info(n);
  std::fflush(stdout);
  std::string cmd = py + " " + shell_quote(bench_dir + "/report.py") + " --rows " +
                    shell_quote(out + "/gptrt_rows.json") + " --rows " +
                    shell_quote(out + "/peers.json") + " --meta " +
                    shell_quote(out + "/meta.json") + " --out " + shell_quote(out);
  if (std::system(cmd.c_str()) != 0)
    throw Error(ErrorCode::kIoError, "bench/report.py failed; the rows are in " + out +
                                         "/gptrt_rows.json and peers.json");
  std::ifstream md(out + "/results.md");
  std::printf("%s", std::string((std::istreambuf_iterator<char>(md)), {}).c_str());
  return 0;
}

}  // namespace gptrt::cli

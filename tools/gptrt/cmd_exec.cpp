// `gptrt exec`: trtexec's flags and report, so the recipe's commands run with trtexec replaced.
#include <algorithm>
#include <cstdio>

#include "common.h"
#include "core/stats.h"
#include "gptrt/error.h"
#include "platform/platform.h"

namespace gptrt::cli {
namespace {

std::vector<FlagSpec> exec_flags() {
  std::vector<FlagSpec> f = build_flags();
  std::vector<FlagSpec> more = {
      {"saveEngine", true, "write the built engine to this file"},
      {"loadEngine", true, "run an engine file instead of building from --onnx"},
      {"shapes", true,
       "input shapes to run, e.g. input_ids:8x12,attention_mask:8x12 (default: each input's opt "
       "shape)"},
      {"profile", true, "optimization profile to run (default 0)"},
      {"iterations", true, "run at least this many timed iterations (default 10)"},
      {"warmUp", true, "warm up for this many milliseconds first (default 200)"},
      {"duration", true, "run timed iterations for at least this many seconds (default 3)"},
      {"avgRuns", true,
       "with --verbose, print averages over this many consecutive runs (default 10)"},
      {"percentile", true, "percentiles to report, comma-separated (default 90,95,99)"},
      {"noDataTransfers", false,
       "do not time host/device copies (no effect on CPU backends, which copy nothing)"},
      {"useCudaGraph", false, "replay CUDA graphs (no effect on CPU backends)"},
      {"loadInputs", true, "inputs from .npy files: input_ids:ids.npy,attention_mask:mask.npy"},
      {"exportOutput", true, "write DIR/<output>.npy (float32) for every output of the last run"},
      {"exportTimes", true,
       "write every timed iteration's start, end and latency as JSON to this file"},
      {"seed", true, "seed of the random inputs (default 1234)"},
      {"threads", true, "CPU threads to run on (default: every core)"},
      {"dumpProfile", false,
       "print the time spent in each op type over the timed iterations (cuda: GPU time per kernel "
       "kind, the kernels run one by one without a CUDA graph)"},
      {"skipInference", false, "build (and save) only"},
      {"help", false, "show this help"},
  };
  f.insert(f.end(), more.begin(), more.end());
  return f;
}

void print_stats_line(const std::string& label, const LatencyStats& s,
                      const std::vector<double>& pcts) {
  char buf[512];
  int n = std::snprintf(buf, sizeof buf,
                        "%s: min = %.5f ms, max = %.5f ms, mean = %.5f ms, median = %.5f ms",
                        label.c_str(), s.min, s.max, s.mean, s.median);
  std::string line(buf, static_cast<size_t>(n));
  for (double p : pcts) {
    std::snprintf(buf, sizeof buf, ", percentile(%g%%) = %.5f ms", p, s.percentile(p));
    line += buf;
  }
  log_info(line);
}

std::vector<double> parse_percentiles(const std::string& text) {
  std::vector<double> out;
  std::vector<std::string> items = split_list(text, ',');
  if (items.empty()) items.push_back("");  // reported as malformed below
  for (const std::string& item : items) {
    char* end = nullptr;
    double v = std::strtod(item.c_str(), &end);
    if (item.empty() || *end != '\0' || v < 0 || v > 100) {
      throw Error(
          ErrorCode::kInvalidArgument,
          "--percentile expects numbers in [0, 100] separated by commas, found '" + text + "'");
    }
    out.push_back(v);
  }
  return out;
}

}  // namespace

int cmd_exec(const std::vector<std::string>& argv) {
  std::vector<FlagSpec> specs = exec_flags();
  Args args = Args::parse(specs, argv, "exec");
  if (args.has("help")) {
    print_help(
        "usage: gptrt exec (--onnx=MODEL.onnx [--saveEngine=FILE] [profile flags] | "
        "--loadEngine=FILE) [run flags]\n"
        "Builds and/or runs an engine and prints trtexec's performance summary.",
        specs);
    return 0;
  }
  bool verbose = args.has("verbose");
  std::vector<double> pcts = parse_percentiles(args.get("percentile", "90,95,99"));
  int64_t iterations = args.get_int("iterations", 10, 1);
  double warmup_ms = args.get_double("warmUp", 200, 0, 3.6e6);
  double duration_s = args.get_double("duration", 3, 0, 86400);
  int64_t avg_runs = args.get_int("avgRuns", 10, 1);
  if (args.has("saveEngine") && !args.has("onnx") && !args.has("hf"))
    throw Error(ErrorCode::kInvalidArgument, "--saveEngine needs --onnx (or --hf) to build from");

  LoadedEngine le = load_or_build(args, "exec", [&](const std::string& s) { log_info(s); });
  const EngineInfo& info = le.engine->info();
  if (le.built) {
    log_info("Engine built in " + std::to_string(le.build_ms / 1e3) + " sec (from " + le.source +
             ").");
    if (args.has("saveEngine")) {
      double t0 = platform::now_seconds();
      le.engine->save(args.get("saveEngine"));
      log_info("Engine saved to " + args.get("saveEngine") + " in " +
               std::to_string((platform::now_seconds() - t0) * 1e3) + " ms.");
    }
  } else {
    log_info("Engine loaded in " + std::to_string(le.load_ms / 1e3) + " sec (from " + le.source +
             ").");
  }
  log_info(std::string("Backend: ") + backend_name(info.backend) + " (" + info.target +
           "), precision " + precision_name(info.precision) + ", " +
           std::to_string(info.profiles.size()) + " optimization profile(s).");
  bool gpu = backend_on_device(info.backend);
  if (args.has("useCudaGraph") && !gpu)
    log_warning("--useCudaGraph has no effect on the " + std::string(backend_name(info.backend)) +
                " backend (no CUDA graphs on the CPU); accepted and ignored.");
  if (args.has("noDataTransfers") && !gpu)
    log_warning("--noDataTransfers has no effect on the " +
                std::string(backend_name(info.backend)) +
                " backend: inputs are used in place, nothing is copied.");
  if (args.has("skipInference")) return 0;

  int64_t profile = args.get_int("profile", 0, 0);
  if (profile >= static_cast<int64_t>(info.profiles.size())) {
    throw Error(ErrorCode::kInvalidArgument,
                "--profile=" + std::to_string(profile) + " but the engine has " +
                    std::to_string(info.profiles.size()) + " profile(s)");
  }
  TensorMap inputs = make_inputs(args, *le.engine, static_cast<int>(profile));
  auto ctx = le.engine->create_execution_context(
      static_cast<int>(args.get_int("threads", 0, 1, kMaxThreads)));
  // As trtexec: kernels are launched one by one unless --useCudaGraph replays captured graphs.
  ctx->set_cuda_graphs(args.has("useCudaGraph"));
  int chosen = ctx->check_inputs(inputs);
  std::string shapes;
  for (const TensorDesc& d : info.model.inputs) {
    shapes +=
        (shapes.empty() ? "" : ",") + d.name + ":" + shape_dims_text(inputs.at(d.name).shape());
  }
  log_info("Input shapes: " + shapes + " (profile " + std::to_string(chosen) + "), " +
           std::to_string(ctx->threads()) + " thread(s)");
  if (ctx->activation_arena_bytes() > 0) {
    log_info("Activation arena: " +
             std::to_string(static_cast<double>(ctx->activation_arena_bytes()) / 1e6) +
             " MB reserved for the profiles' largest shapes (touched as used; no allocation "
             "per run).");
  }

  // Warm-up, then timed runs until both the iteration count and the duration are reached.
  double t_start = platform::now_seconds();
  std::vector<Tensor> outputs;
  int warm_runs = 0;
  do {
    outputs = ctx->execute(inputs);
    ++warm_runs;
  } while ((platform::now_seconds() - t_start) * 1e3 < warmup_ms);
  std::vector<double> starts, latencies, h2d, compute, d2h;
  if (args.has("dumpProfile")) ctx->set_profiling(true);
  bool no_transfers = gpu && args.has("noDataTransfers");
  double t0 = platform::now_seconds();
  while (static_cast<int64_t>(latencies.size()) < iterations ||
         platform::now_seconds() - t0 < duration_s) {
    double a = platform::now_seconds();
    outputs = ctx->execute(inputs);
    double b = platform::now_seconds();
    ExecutionContext::Timings t = ctx->last_timings();
    starts.push_back((a - t0) * 1e3);
    // --noDataTransfers on the GPU: the latency is the GPU compute alone, as trtexec reports it.
    latencies.push_back(no_transfers ? t.compute_ms : (b - a) * 1e3);
    h2d.push_back(t.h2d_ms);
    compute.push_back(t.compute_ms);
    d2h.push_back(t.d2h_ms);
  }
  double wall = platform::now_seconds() - t0;
  LatencyStats stats = compute_stats(latencies);
  if (verbose) {
    for (size_t i = 0; i + static_cast<size_t>(avg_runs) <= latencies.size();
         i += static_cast<size_t>(avg_runs)) {
      double sum = 0;
      for (int64_t k = 0; k < avg_runs; ++k) sum += latencies[i + static_cast<size_t>(k)];
      char buf[128];
      std::snprintf(buf, sizeof buf, "Average on %lld runs - latency: %.5f ms",
                    static_cast<long long>(avg_runs), sum / static_cast<double>(avg_runs));
      log_info(buf);
    }
  }
  double total_compute = 0;
  for (double l : gpu ? compute : latencies) total_compute += l;
  log_info("Warm-up: " + std::to_string(warm_runs) + " runs in " + std::to_string(warmup_ms) +
           " ms requested.");
  log_info("=== Performance summary ===");
  char buf[256];
  std::snprintf(buf, sizeof buf, "Throughput: %.3f qps",
                static_cast<double>(latencies.size()) / wall);
  log_info(buf);
  print_stats_line("Latency", stats, pcts);
  if (gpu) {
    print_stats_line("H2D Latency", compute_stats(h2d), pcts);
    print_stats_line("GPU Compute Time", compute_stats(compute), pcts);
    print_stats_line("D2H Latency", compute_stats(d2h), pcts);
    log_info(std::string("CUDA graphs: ") +
             (args.has("useCudaGraph")
                  ? "captured per shape and replayed"
                  : "off (kernels launched one by one; --useCudaGraph replays graphs)") +
             (no_transfers ? "; --noDataTransfers: latency is the GPU compute time" : ""));
  } else {
    log_info("H2D Latency: none (CPU backend: inputs are read in place)");
    print_stats_line("Compute Time", stats, pcts);
    log_info("D2H Latency: none (CPU backend: outputs are written in place)");
  }
  std::snprintf(buf, sizeof buf, "Total Host Walltime: %.5f s", wall);
  log_info(buf);
  std::snprintf(buf, sizeof buf, "Total Compute Time: %.5f s", total_compute / 1e3);
  log_info(buf);
  std::snprintf(buf, sizeof buf, "Timed iterations: %zu", latencies.size());
  log_info(buf);
  if (le.built)
    std::snprintf(buf, sizeof buf, "Build time: %.3f ms (import + build, not part of latency)",
                  le.build_ms);
  else
    std::snprintf(buf, sizeof buf, "Engine load time: %.3f ms (not part of latency)", le.load_ms);
  log_info(buf);
  if (stats.count > 1 && stats.mean > 0 && stats.stddev / stats.mean > 0.1) {
    std::snprintf(buf, sizeof buf,
                  "The latency varies by %.1f%% (stddev/mean); the machine may be busy, numbers "
                  "may be unstable.",
                  100 * stats.stddev / stats.mean);
    log_warning(buf);
  }
  log_info(
      "Explanations: Throughput = timed iterations / host walltime. Latency = host wall time of "
      "one forward pass (inputs to outputs). "
      "Compute Time = time in the backend's kernels; on CPU backends it equals Latency.");

  if (args.has("dumpProfile")) {
    auto prof = ctx->profile();
    std::vector<std::pair<double, std::string>> order;
    double total = 0;
    for (const auto& [op, t] : prof) {
      order.emplace_back(t.first, op);
      total += t.first;
    }
    std::sort(order.rbegin(), order.rend());
    log_info("=== Profile (" + std::to_string(latencies.size()) +
             " iterations, time per op type) ===");
    for (const auto& [ms, op] : order) {
      std::snprintf(
          buf, sizeof buf, "%-26s %10.3f ms/iter %6.1f%%  %lld calls/iter", op.c_str(),
          ms / static_cast<double>(latencies.size()), 100.0 * ms / std::max(total, 1e-9),
          static_cast<long long>(prof[op].second / static_cast<int64_t>(latencies.size())));
      log_info(buf);
    }
  }
  if (args.has("exportTimes")) {
    std::string path = args.get("exportTimes");
    std::string json = "[";
    for (size_t i = 0; i < latencies.size(); ++i) {
      std::snprintf(buf, sizeof buf,
                    "%s\n  {\"startMs\": %.6f, \"endMs\": %.6f, \"latencyMs\": %.6f}", i ? "," : "",
                    starts[i], starts[i] + latencies[i], latencies[i]);
      json += buf;
    }
    json += "\n]\n";
    platform::write_file_atomically(path, json.data(), json.size());
    log_info("Times exported to " + path);
  }
  if (args.has("exportOutput")) {
    export_outputs(args.get("exportOutput"), *le.engine, outputs);
    log_info("Outputs exported to " + args.get("exportOutput"));
  }
  return 0;
}

}  // namespace gptrt::cli

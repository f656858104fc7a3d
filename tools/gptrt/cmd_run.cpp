// `gptrt run`: one forward pass on given or random inputs; outputs to .npy.
#include <cmath>
#include <cstdio>

#include "common.h"
#include "gptrt/error.h"
#include "platform/platform.h"

namespace gptrt::cli {

int cmd_run(const std::vector<std::string>& argv) {
  std::vector<FlagSpec> specs = build_flags();
  std::vector<FlagSpec> more = {
      {"loadEngine", true, "engine file to run (instead of --onnx)"},
      {"shapes", true, "shapes of random inputs, e.g. input_ids:1x12,attention_mask:1x12"},
      {"profile", true, "profile whose opt shapes random inputs take (default 0)"},
      {"loadInputs", true, "inputs from .npy files: input_ids:ids.npy,attention_mask:mask.npy"},
      {"exportOutput", true, "write DIR/<output>.npy (float32) for every output"},
      {"seed", true, "seed of the random inputs (default 1234)"},
      {"threads", true, "CPU threads to run on (default: every core)"},
      {"help", false, "show this help"},
  };
  specs.insert(specs.end(), more.begin(), more.end());
  Args args = Args::parse(specs, argv, "run");
  if (args.has("help")) {
    print_help(
        "usage: gptrt run (--onnx=MODEL.onnx | --loadEngine=FILE) [--loadInputs=...] "
        "[--exportOutput=DIR]",
        specs);
    return 0;
  }
  LoadedEngine le = load_or_build(args, "run", [&](const std::string& s) {
    if (args.has("verbose") || s.rfind("passes:", 0) != 0) log_info(s);
  });
  int64_t profile = args.get_int("profile", 0, 0);
  if (profile >= static_cast<int64_t>(le.engine->info().profiles.size()))
    throw Error(ErrorCode::kInvalidArgument, "--profile is out of range");
  TensorMap inputs = make_inputs(args, *le.engine, static_cast<int>(profile));
  auto ctx = le.engine->create_execution_context(
      static_cast<int>(args.get_int("threads", 0, 1, kMaxThreads)));
  double t0 = platform::now_seconds();
  std::vector<Tensor> outputs = ctx->execute(inputs);
  double ms = (platform::now_seconds() - t0) * 1e3;
  const auto& descs = le.engine->info().model.outputs;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& t = outputs[i];
    std::string extra;
    if (t.dtype() == DType::kFloat32 && t.rank() >= 1 && t.numel() > 0) {
      // Top-1 of the last position of the first row: what a generator would pick next.
      int64_t last = t.dim(t.rank() - 1);
      const float* row = t.data<float>() + (t.rank() >= 2 ? (t.dim(t.rank() - 2) - 1) * last : 0);
      int64_t best = 0;
      for (int64_t k = 1; k < last; ++k)
        if (row[k] > row[best]) best = k;
      char buf[96];
      std::snprintf(buf, sizeof buf, ", argmax at the last position of row 0: %lld (%.4f)",
                    static_cast<long long>(best), static_cast<double>(row[best]));
      extra = buf;
    }
    log_info("output '" + descs[i].name + "' " + dtype_name(t.dtype()) + " " +
             shape_str(t.shape()) + extra);
  }
  char buf[128];
  std::snprintf(buf, sizeof buf, "forward pass: %.3f ms (%s %.1f ms)", ms,
                le.built ? "build" : "engine load", le.built ? le.build_ms : le.load_ms);
  log_info(buf);
  if (args.has("exportOutput")) {
    export_outputs(args.get("exportOutput"), *le.engine, outputs);
    log_info("outputs written to " + args.get("exportOutput"));
  }
  return 0;
}

}  // namespace gptrt::cli

// `gptrt build`: ONNX -> engine file.
#include <cstdio>

#include "common.h"
#include "gptrt/error.h"
#include "platform/platform.h"

namespace gptrt::cli {

int cmd_build(const std::vector<std::string>& argv) {
  std::vector<FlagSpec> specs = build_flags();
  specs.push_back({"saveEngine", true, "engine file to write (required)"});
  specs.push_back({"help", false, "show this help"});
  Args args = Args::parse(specs, argv, "build");
  if (args.has("help")) {
    print_help(
        "usage: gptrt build --onnx=MODEL.onnx --saveEngine=FILE [--minShapes=... --optShapes=... "
        "--maxShapes=...]...\n"
        "Without profile flags the engine admits batch 1..64 and every seq_len 1..n_positions.",
        specs);
    return 0;
  }
  if (!args.has("onnx") && !args.has("hf"))
    throw Error(ErrorCode::kInvalidArgument,
                "gptrt build: --onnx=MODEL.onnx or --hf=DIR is required");
  if (!args.has("saveEngine"))
    throw Error(ErrorCode::kInvalidArgument,
                "gptrt build: --saveEngine=FILE is required (where to write the engine)");
  bool verbose = args.has("verbose");
  LoadedEngine le = load_or_build(args, "build", [&](const std::string& s) {
    if (verbose || s.rfind("passes:", 0) != 0) log_info(s);
  });
  double t0 = platform::now_seconds();
  le.engine->save(args.get("saveEngine"));
  double save_ms = (platform::now_seconds() - t0) * 1e3;
  const EngineInfo& info = le.engine->info();
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "Built %s engine (%s, %s) from %s in %.1f ms; saved %s in %.1f ms.",
                backend_name(info.backend), info.target.c_str(), precision_name(info.precision),
                le.source.c_str(), le.build_ms, args.get("saveEngine").c_str(), save_ms);
  log_info(buf);
  for (size_t p = 0; p < info.profiles.size(); ++p) {
    for (const auto& [name, r] : info.profiles[p].inputs) {
      log_info("profile " + std::to_string(p) + ": " + name + " min " + shape_str(r.min) + " opt " +
               shape_str(r.opt) + " max " + shape_str(r.max));
    }
  }
  return 0;
}

}  // namespace gptrt::cli

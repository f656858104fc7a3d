// `gptrt make-model`: a Hugging Face GPT-2 folder with seeded random weights (no download).
#include <cstdio>

#include "common.h"
#include "gptrt/error.h"
#include "hf/make_model.h"
#include "platform/platform.h"

namespace gptrt::cli {

int cmd_make_model(const std::vector<std::string>& argv) {
  std::vector<FlagSpec> specs = {
      {"arch", true, "distilgpt2 (default), gpt2, gpt2-medium, gpt2-large or gpt2-xl"},
      {"seed", true, "seed of the random weights (default 0)"},
      {"out", true, "folder to write config.json and model.safetensors into (required)"},
      {"help", false, "show this help"},
  };
  Args args = Args::parse(specs, argv, "make-model");
  if (args.has("help")) {
    print_help(
        "usage: gptrt make-model --arch distilgpt2 --seed 0 --out DIR\n"
        "Writes a Hugging Face folder of the real architecture with seeded random weights.",
        specs);
    return 0;
  }
  if (!args.has("out"))
    throw Error(ErrorCode::kInvalidArgument, "gptrt make-model: --out=DIR is required");
  hf::Gpt2Config config = hf::preset(args.get("arch", "distilgpt2"));
  uint64_t seed = static_cast<uint64_t>(args.get_int("seed", 0, 0));
  double t0 = platform::now_seconds();
  hf::make_model(config, seed, args.get("out"));
  std::printf(
      "[I] wrote %s/config.json and model.safetensors: %s, %lld parameters (%.1f MB float32), seed "
      "%llu, in %.2f s\n",
      args.get("out").c_str(), args.get("arch", "distilgpt2").c_str(),
      static_cast<long long>(config.parameter_count()),
      static_cast<double>(config.parameter_count()) * 4 / 1e6,
      static_cast<unsigned long long>(seed), platform::now_seconds() - t0);
  return 0;
}

}  // namespace gptrt::cli

// Pieces the subcommands share: trtexec shape syntax, profiles from flags, model and engine
// loading, inputs (random or --loadInputs), output export.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "gptrt/engine.h"
#include "tokenizer/tokenizer.h"

namespace gptrt::cli {

/// The most threads a --threads flag may ask for.
constexpr int64_t kMaxThreads = 4096;

/// Non-empty items of `text` separated by `sep` ("a,,b" -> {"a", "b"}).
std::vector<std::string> split_list(const std::string& text, char sep);

/// Parses trtexec's "input_ids:1x12,attention_mask:1x12" (names may be quoted).
std::vector<std::pair<std::string, Shape>> parse_shapes(const std::string& text,
                                                        const std::string& flag);

/// Profiles from repeated --minShapes/--optShapes/--maxShapes (the k-th of each is profile k).
std::vector<OptimizationProfile> profiles_from_flags(const Args& args);

/// Flags of every command that builds an engine.
std::vector<FlagSpec> build_flags();
/// BuildConfig from those flags; `notice` receives one-line notices.
BuildConfig build_config_from_flags(const Args& args,
                                    std::function<void(const std::string&)> notice);

/// An engine from --loadEngine, or built from --onnx; timing of the step it took.
struct LoadedEngine {
  std::shared_ptr<const Engine> engine;
  bool built = false;   // true when built from ONNX in this process
  double build_ms = 0;  // import + build
  double load_ms = 0;   // engine file load
  std::string source;
};
LoadedEngine load_or_build(const Args& args, const std::string& command,
                           std::function<void(const std::string&)> notice);

/// Inputs for one run: from --loadInputs files, else random valid ones of `shapes` (from
/// --shapes, else each input's opt shape in `profile`), seeded with --seed.
TensorMap make_inputs(const Args& args, const Engine& engine, int profile);

/// Writes DIR/<output name>.npy (float32) for every output; nothing on failure.
void export_outputs(const std::string& dir, const Engine& engine,
                    const std::vector<Tensor>& outputs);

/// Token ids from "1,2,3" (spaces allowed); throws naming `flag` when malformed.
std::vector<int64_t> parse_id_list(const std::string& text, const std::string& flag);

/// Prints "[I] message" lines (trtexec's log style).
void log_info(const std::string& msg);
void log_warning(const std::string& msg);

/// Subcommands; each returns the process exit code.
int cmd_build(const std::vector<std::string>& argv);
int cmd_run(const std::vector<std::string>& argv);
int cmd_exec(const std::vector<std::string>& argv);
int cmd_inspect(const std::vector<std::string>& argv);
int cmd_make_model(const std::vector<std::string>& argv);
int cmd_export_onnx(const std::vector<std::string>& argv);
int cmd_bench(const std::vector<std::string>& argv);
/// A tokenizer from --tokenizer, else the one next to the model (the --hf folder, or the
/// folder of --onnx or --loadEngine), else null.
std::unique_ptr<tokenizer::Tokenizer> find_tokenizer(const Args& args);

int cmd_generate(const std::vector<std::string>& argv);
int cmd_serve(const std::vector<std::string>& argv);
int cmd_tokenize(const std::vector<std::string>& argv);
int cmd_version();

}  // namespace gptrt::cli

// Helpers shared by the tests: data paths, goldens, running the CLI.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#ifdef _WIN32  // (the Windows build under Wine: scripts/windows_cross.sh) POSIX names the tests use
inline int setenv(const char* name, const char* value, int) {
  return _putenv_s(name, value);
}
inline int unsetenv(const char* name) {
  return _putenv_s(name, "");
}
#define popen _popen
#define pclose _pclose
#define WIFEXITED(status) 1
#define WEXITSTATUS(status) (status)
#endif

#include "core/npy.h"
#include "core/safetensors.h"
#include "gptrt/engine.h"
#include "gptrt/error.h"

namespace gptrt::test {

/// tests/data (the build's path, or $GPTRT_TEST_DATA when the binary runs elsewhere).
inline std::string data_path(const std::string& rel) {
  const char* env = std::getenv("GPTRT_TEST_DATA");
  return std::string(env ? env : GPTRT_TEST_DATA) + "/" + rel;
}

/// A fresh, empty temporary directory for one test.
inline std::string temp_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() /
             ("gptrt_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

/// True when the tests may create symbolic links here (Windows grants it only with Developer Mode
/// or to administrators, and Wine not at all); the tests of planted links skip otherwise.
inline bool symlinks_work() {
  const std::filesystem::path dir = temp_dir("symlink_probe");
  std::error_code ec;
  std::filesystem::create_symlink(dir / "target", dir / "link", ec);
  std::filesystem::remove_all(dir);
  return !ec;
}

/// `text` as one argument of the shell run_cli goes through (sh; cmd.exe on Windows).
inline std::string shell_arg(const std::string& text) {
#ifdef _WIN32
  return "\"" + text + "\"";
#else
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
#endif
}

/// Result of running the gptrt CLI.
struct CliResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

/// Runs `gptrt <args>` through the shell, capturing its output.
inline CliResult run_cli(const std::string& args) {
  const char* env = std::getenv("GPTRT_CLI");  // the CLI's path when the tests run elsewhere
  std::string cmd = std::string(env ? env : GPTRT_CLI) + " " + args + " 2>&1";
  CliResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

/// max |a - b| over positions [b, t, :] where mask[b, t] == 1 (mask may be empty: all).
inline double max_abs_diff_masked(const Tensor& a, const Tensor& b, const Tensor* mask) {
  EXPECT_EQ(a.shape(), b.shape());
  if (a.shape() != b.shape()) return INFINITY;
  int64_t rows = a.rank() >= 2 ? a.dim(0) * a.dim(1) : 1;
  int64_t width = a.numel() / rows;
  double worst = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (mask) {
      int64_t m =
          mask->dtype() == DType::kInt64 ? mask->data<int64_t>()[r] : mask->data<int32_t>()[r];
      if (m == 0) continue;
    }
    for (int64_t k = 0; k < width; ++k) {
      double d = std::fabs(static_cast<double>(a.data<float>()[r * width + k]) -
                           b.data<float>()[r * width + k]);
      if (!(d <= worst)) worst = d;  // NaN propagates as a failure
    }
  }
  return worst;
}

/// Runs the six FP32 golden cases of the fixture through `ctx` and expects max |dlogit| <= 1e-4
/// at non-pad positions; `label` names the configuration in failures.
inline void expect_fixture_goldens(ExecutionContext& ctx, const std::string& label) {
  static const auto goldens = safetensors::read(data_path("gpt2-tiny/goldens.safetensors"));
  for (int c = 0; c < 6; ++c) {
    std::string k = "case" + std::to_string(c);
    const Tensor& mask = goldens.at(k + ".attention_mask");
    std::vector<Tensor> out =
        ctx.execute({{"input_ids", goldens.at(k + ".input_ids")}, {"attention_mask", mask}});
    ASSERT_EQ(out.size(), 1u) << label;
    EXPECT_LE(max_abs_diff_masked(out[0], goldens.at(k + ".logits"), &mask), 1e-4)
        << label << " " << k;
  }
}

/// How a reduced-precision engine agrees with the fixture's FP32 goldens over the six cases, at
/// non-pad positions: top-1 matches and the largest |dlogit|.
struct Agreement {
  int64_t agree = 0, total = 0;
  double worst = 0;
  double rate() const {
    return total ? static_cast<double>(agree) / static_cast<double>(total) : 0;
  }
};
inline Agreement fixture_agreement(ExecutionContext& ctx) {
  static const auto goldens = safetensors::read(data_path("gpt2-tiny/goldens.safetensors"));
  Agreement a;
  for (int c = 0; c < 6; ++c) {
    std::string k = "case" + std::to_string(c);
    const Tensor& mask = goldens.at(k + ".attention_mask");
    Tensor out =
        ctx.execute({{"input_ids", goldens.at(k + ".input_ids")}, {"attention_mask", mask}})[0];
    const Tensor& want = goldens.at(k + ".logits");
    a.worst = std::max(a.worst, max_abs_diff_masked(out, want, &mask));
    int64_t rows = out.dim(0) * out.dim(1), v = out.dim(2);
    for (int64_t r = 0; r < rows; ++r) {
      if (mask.data<int64_t>()[r] == 0) continue;
      const float* x = out.data<float>() + r * v;
      const float* y = want.data<float>() + r * v;
      a.agree += std::max_element(x, x + v) - x == std::max_element(y, y + v) - y;
      ++a.total;
    }
  }
  return a;
}

/// Builds an engine from an ONNX file with the default profile.
inline std::shared_ptr<const Engine> build_default(const std::string& onnx_path) {
  return Engine::build(Network::from_onnx(onnx_path), BuildConfig{});
}

/// Expects `fn` to throw gptrt::Error whose message contains every one of `parts`.
template <typename Fn>
void expect_error(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected a gptrt::Error";
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const std::string& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "message lacks '" << p << "': " << msg;
  }
}

/// Hugging Face's greedy generate on a left-padded batch of the tiny fixture
/// (tests/data/gpt2-tiny/past/generate.*.npy): each prompt without its padding, and each row's
/// new tokens.
struct HfGenerateGoldens {
  std::vector<std::vector<int64_t>> prompts, new_tokens;
  HfGenerateGoldens() {
    Tensor ids = npy::read(data_path("gpt2-tiny/past/generate.ids.npy"));
    Tensor mask = npy::read(data_path("gpt2-tiny/past/generate.mask.npy"));
    Tensor want = npy::read(data_path("gpt2-tiny/past/generate.new_tokens.npy"));
    for (int64_t r = 0; r < ids.dim(0); ++r) {
      prompts.emplace_back();
      for (int64_t t = 0; t < ids.dim(1); ++t)
        if (mask.data<int64_t>()[r * ids.dim(1) + t])
          prompts.back().push_back(ids.data<int64_t>()[r * ids.dim(1) + t]);
      new_tokens.emplace_back(want.data<int64_t>() + r * want.dim(1),
                              want.data<int64_t>() + (r + 1) * want.dim(1));
    }
  }
};

}  // namespace gptrt::test

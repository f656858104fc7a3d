// Encode speed of the GPT-2 tokenizer on one core (the issue asks for at least 5 MB/s): a
// mixed English/code/unicode text, cold (first pass, empty cache) and warm.
//   build/release/bench/tokenizer_bench tests/data/tokenizer [MB]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  using namespace gptrt;
  std::string path = argc > 1 ? argv[1] : "tests/data/tokenizer";
  double mb = argc > 2 ? std::atof(argv[2]) : 8.0;
  tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(path);
  const char* pieces[] = {
      "The recipe deploys DistilGPT2 by exporting it to ONNX and building a TensorRT engine. ",
      "Its users hit every pitfall: fixed sequence lengths, cryptic shape errors, no KV cache. ",
      "def forward(self, x):\n    return self.proj(torch.tanh(x)) * 0.5  # 2026-11-26\n",
      "Grüße, ¿qué tal? 日本語のテキスト 😀 numbers 3.14159 and 1,000,000 I'm sure they've gone. ",
  };
  std::string text;
  unsigned seed = 1;
  while (static_cast<double>(text.size()) < mb * 1e6) {
    seed = seed * 1103515245u + 12345u;
    text += pieces[(seed >> 16) % 4];
    text += std::to_string(seed % 100000) + " ";
  }
  for (const char* pass : {"cold", "warm"}) {
    auto t0 = std::chrono::steady_clock::now();
    size_t n = tok.encode(text).size();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s: %.1f MB in %.3f s = %.1f MB/s (%zu tokens, one core)\n", pass,
                static_cast<double>(text.size()) / 1e6, s,
                static_cast<double>(text.size()) / 1e6 / s, n);
  }
  return 0;
}

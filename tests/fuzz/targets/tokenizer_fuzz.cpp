// Tokenizer. The first byte picks the case:
//   0: the rest is a tokenizer.json; it loads or is refused with gptrt::Error, and one that
//      loads encodes and decodes a fixed text;
//   1: the rest is text; with the GPT-2 fixture tokenizer, decode(encode(text)) gives the text
//      back (invalid UTF-8 repaired, as decode documents);
//   2: the rest is token ids (two bytes each); the stream decoder, fed one id at a time, gives
//      exactly what decode() gives.
#include <vector>

#include "fuzz_common.h"
#include "tokenizer/tokenizer.h"

namespace {

const gptrt::tokenizer::Tokenizer& gpt2() {
  static const gptrt::tokenizer::Tokenizer t =
      gptrt::tokenizer::Tokenizer::load(GPTRT_FUZZ_DATA "/tokenizer/tokenizer.json");
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  gptrt::fuzz::init();
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 3;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  if (mode == 0) {
    static const std::string path = gptrt::fuzz::scratch(".tokenizer.json");
    gptrt::fuzz::write(path, data + 1, size - 1);
    try {
      auto t = gptrt::tokenizer::Tokenizer::load(path);
      (void)t.decode(t.encode("Hello world, héllo 🙂 <|endoftext|>"));
    } catch (const gptrt::Error&) {
    }
  } else if (mode == 1) {
    const auto& t = gpt2();
    if (t.decode(t.encode(rest)) != gptrt::tokenizer::repair_utf8(rest)) __builtin_trap();
  } else {
    const auto& t = gpt2();
    std::vector<int64_t> ids;
    for (size_t i = 0; i + 1 < rest.size(); i += 2)
      ids.push_back((static_cast<uint8_t>(rest[i]) | static_cast<uint8_t>(rest[i + 1]) << 8) %
                    t.vocab_size());
    gptrt::tokenizer::StreamDecoder s(t);
    std::string streamed;
    for (int64_t id : ids) streamed += s.push(id);
    streamed += s.finish();
    if (streamed != t.decode(ids)) __builtin_trap();
  }
  return 0;
}

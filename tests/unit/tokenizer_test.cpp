// The GPT-2 tokenizer against Hugging Face: the shared goldens and extra texts (unicode, emoji,
// whitespace, contractions, numbers, code, special tokens, long inputs); both file forms;
// round trips; streaming decode; bad files.
#include <fstream>
#include <sstream>

#include <random>
#include "core/json.h"
#include "test_util.h"

#include "tokenizer/tokenizer.h"

namespace gptrt::test {
namespace {

json::Value read_json(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return json::parse(ss.str(), path);
}

std::vector<int64_t> ids_of(const json::Value& v) {
  std::vector<int64_t> r;
  for (const json::Value& x : v) r.push_back(x.get<int64_t>());
  return r;
}

const tokenizer::Tokenizer& tok() {
  static const tokenizer::Tokenizer t =
      tokenizer::Tokenizer::load(data_path("tokenizer/tokenizer.json"));
  return t;
}

bool valid_utf8(const std::string& s) {
  return tokenizer::repair_utf8(s) == s;
}

TEST(Tokenizer, MatchesHuggingFaceOnEveryGolden) {
  int cases = 0;
  for (const char* file :
       {"tokenizer/gpt2_tokenizer_goldens.json", "tokenizer/extra_goldens.json"}) {
    json::Value cases_json = read_json(data_path(file));
    for (const json::Value& g : cases_json) {
      const std::string& text = g.at("text").get_ref<const std::string&>();
      std::vector<int64_t> want = ids_of(g.at("ids"));
      EXPECT_EQ(tok().encode(text), want) << file << ": " << text;
      EXPECT_EQ(tok().decode(want), g.at("decoded").get<std::string>()) << file << ": " << text;
      ++cases;
    }
  }
  EXPECT_GE(cases, 29);
  EXPECT_EQ(tok().encode("Hello, world!"), (std::vector<int64_t>{15496, 11, 995, 0}));
  EXPECT_EQ(tok().vocab_size(), 50257);
  EXPECT_EQ(tok().special_id("<|endoftext|>"), 50256);
}

TEST(Tokenizer, VocabAndMergesFilesGiveTheSameTokens) {
  tokenizer::Tokenizer folder =
      tokenizer::Tokenizer::load(data_path("tokenizer"));  // tokenizer.json
  std::string dir = temp_dir("vocab_merges");
  std::filesystem::copy_file(data_path("tokenizer/vocab.json"), dir + "/vocab.json");
  std::filesystem::copy_file(data_path("tokenizer/merges.txt"), dir + "/merges.txt");
  tokenizer::Tokenizer files = tokenizer::Tokenizer::load(dir);
  json::Value extra = read_json(data_path("tokenizer/extra_goldens.json"));
  for (const json::Value& g : extra) {
    const std::string& text = g.at("text").get_ref<const std::string&>();
    EXPECT_EQ(files.encode(text), folder.encode(text)) << text;
  }
}

TEST(Tokenizer, DecodeOfEncodeIsTheTextAndStreamingNeverSplitsACharacter) {
  std::string texts[] = {"plain ascii", "🙂 emoji 👩‍💻 and 漢字 mixed with ascii",
                         "  \n\t  spaces ", "ʻOkina, Ω≈ç√∫, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 (4-byte), ẞ",
                         std::string(2000, 'x') + " tail"};
  for (const std::string& t : texts) {
    std::vector<int64_t> ids = tok().encode(t);
    EXPECT_EQ(tok().decode(ids), t);
    tokenizer::StreamDecoder s(tok());
    std::string joined;
    for (int64_t id : ids) {
      std::string piece = s.push(id);
      EXPECT_TRUE(valid_utf8(piece)) << t;
      joined += piece;
    }
    joined += s.finish();
    EXPECT_EQ(joined, t);
  }
  // A token that is half of a character: held back, then completed.
  std::vector<int64_t> ids = tok().encode("😀");
  ASSERT_GT(ids.size(), 1u);
  tokenizer::StreamDecoder s(tok());
  EXPECT_EQ(s.push(ids[0]), "");
  std::string rest;
  for (size_t i = 1; i < ids.size(); ++i) rest += s.push(ids[i]);
  EXPECT_EQ(rest, "😀");
  // A dangling half at the end becomes U+FFFD, like Hugging Face's decode.
  tokenizer::StreamDecoder d(tok());
  d.push(ids[0]);
  EXPECT_EQ(d.finish(), "\xEF\xBF\xBD");
  EXPECT_EQ(tokenizer::repair_utf8("a\xF0\x9F\x98z"), "a\xEF\xBF\xBDz");
  EXPECT_EQ(tokenizer::repair_utf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(Tokenizer, BadFilesAndIdsGiveClearErrors) {
  expect_error([] { tokenizer::Tokenizer::load("/nonexistent/tokenizer.json"); },
               {"does not exist"});
  std::string dir = temp_dir("bad_tokenizer");
  expect_error([&] { tokenizer::Tokenizer::load(dir); }, {"neither tokenizer.json", "vocab.json"});
  { std::ofstream(dir + "/tokenizer.json") << "{\"model\": {\"type\": \"BPE\", \"vocab\": "; }
  expect_error([&] { tokenizer::Tokenizer::load(dir + "/tokenizer.json"); },
               {dir + "/tokenizer.json"});
  { std::ofstream(dir + "/tokenizer.json") << "{\"model\": {\"type\": \"WordPiece\"}}"; }
  expect_error([&] { tokenizer::Tokenizer::load(dir + "/tokenizer.json"); }, {"not BPE"});
  {
    std::ofstream(dir + "/tokenizer.json")
        << "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}";
  }
  expect_error([&] { tokenizer::Tokenizer::load(dir + "/tokenizer.json"); },
               {"lacks the symbol of byte"});
  expect_error([] { tok().decode({50257}); }, {"50257", "outside", "[0, 50257)"});
}

// The stream decoder gives what decode() gives, on any token sequence: random ids weighted to the
// single-byte tokens (lead bytes of 2-, 3- and 4-byte characters arriving alone, stray
// continuation bytes, invalid bytes), each sequence streamed one token at a time.
TEST(Tokenizer, StreamDecoderAgreesWithDecodeOnRandomTokenSequences) {
  const tokenizer::Tokenizer& t = tok();
  std::vector<int64_t> single_bytes;
  for (int b = 0; b < 256; ++b) single_bytes.push_back(t.byte_token(static_cast<uint8_t>(b)));
  std::mt19937 rng(11);
  for (int round = 0; round < 3000; ++round) {
    std::vector<int64_t> ids(1 + rng() % 9);
    for (int64_t& id : ids)
      id = rng() % 4 ? single_bytes[rng() % 256] : static_cast<int64_t>(rng() % 50257);
    tokenizer::StreamDecoder s(t);
    std::string streamed;
    for (int64_t id : ids) streamed += s.push(id);
    streamed += s.finish();
    ASSERT_EQ(streamed, t.decode(ids)) << "round " << round;
  }
  // The case found by hand: a 4-byte character whose lead byte is a token of its own.
  std::string emoji = "\xF0\x9F\x99\x82";
  std::vector<int64_t> bytes;
  for (char c : emoji) bytes.push_back(single_bytes[static_cast<uint8_t>(c)]);
  tokenizer::StreamDecoder s(t);
  std::string streamed;
  for (int64_t id : bytes) streamed += s.push(id);
  EXPECT_EQ(streamed + s.finish(), emoji);
}

// One word of a megabyte (the pre-tokenizer does not split a run of letters): BPE over a heap
// of candidate pairs, not a rescan after every merge, so this is a fraction of a second.
TEST(Tokenizer, AMegabyteLongWordRoundTrips) {
  tokenizer::Tokenizer t = tokenizer::Tokenizer::load(data_path("tokenizer"));
  std::string word(1 << 20, 'a');
  for (size_t i = 0; i < word.size(); i += 7) word[i] = static_cast<char>('b' + i % 20);
  std::vector<int64_t> ids = t.encode(word);
  EXPECT_LT(ids.size(), word.size() / 2) << "merges happened";
  EXPECT_EQ(t.decode(ids), word);
}

}  // namespace
}  // namespace gptrt::test

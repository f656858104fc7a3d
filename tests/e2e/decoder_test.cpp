// The slot decoder on every backend that has one: sequences that join and leave mid-run (a
// prefill beside other slots' decode steps, a freed slot reused) produce exactly the tokens and,
// within 1e-4, the logits each produces alone; long prompts in chunks; every misuse refused.
#include "gptrt/decoder.h"

#include <algorithm>
#include <cmath>

#include "backends/cuda/cuda_backend.h"
#include "test_util.h"

namespace gptrt::test {
namespace {

std::shared_ptr<const Engine> engine_for(Backend backend) {
  BuildConfig c;
  c.backend = backend;
  return Engine::build(Network::from_onnx(data_path("gpt2-tiny/legacy-opset17.onnx")), c);
}

// One sequence's greedy run: the token picked after each pass and that pass's logits.
struct Trace {
  std::vector<int64_t> tokens;
  std::vector<std::vector<float>> logits;
};

int64_t pick(const float* l, int64_t vocab) {
  return std::max_element(l, l + vocab) - l;
}

Trace alone(const std::shared_ptr<const Engine>& engine, const std::vector<int64_t>& prompt,
            int64_t steps) {
  DecoderConfig c;
  c.slots = 1;
  Decoder d(engine, c);
  int slot = d.acquire();
  Trace t;
  std::vector<float> logits;
  d.run({{slot, prompt.data(), static_cast<int64_t>(prompt.size())}}, &logits, nullptr);
  for (int64_t s = 0;; ++s) {
    t.logits.push_back(logits);
    t.tokens.push_back(pick(logits.data(), d.vocab_size()));
    if (s + 1 == steps) break;
    d.run({{slot, &t.tokens.back(), 1}}, &logits, nullptr);
  }
  return t;
}

class DecoderOnBackend : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    std::string why;
    if (GetParam() == Backend::kCuda && cuda::device_sm(&why).empty())
      GTEST_SKIP() << "CUDA backend test skipped: " << why;
  }
};

// Sequences run side by side on one Decoder, each recording its logits and pick per pass.
struct SharedRun {
  Decoder& d;
  std::map<char, Trace> got;
  std::map<char, int> slot_of;
  std::vector<float> logits;

  // One pass over `who` (a prompt for a sequence that has no token yet, else its last pick).
  void pass(const std::vector<std::pair<char, const std::vector<int64_t>*>>& who) {
    const int64_t v = d.vocab_size();
    std::vector<SlotTokens> seqs;
    for (const auto& [name, prompt] : who) {
      Trace& t = got[name];
      if (prompt)
        seqs.push_back({slot_of[name], prompt->data(), static_cast<int64_t>(prompt->size())});
      else
        seqs.push_back({slot_of[name], &t.tokens.back(), 1});
    }
    d.run(seqs, &logits, nullptr);
    for (size_t i = 0; i < who.size(); ++i) {
      Trace& t = got[who[i].first];
      t.logits.emplace_back(logits.begin() + static_cast<std::ptrdiff_t>(i) * v,
                            logits.begin() + static_cast<std::ptrdiff_t>(i + 1) * v);
      t.tokens.push_back(pick(t.logits.back().data(), v));
    }
  }

  // Each sequence's tokens equal its solo run's, its logits within 1e-4.
  void expect_solo(const std::map<char, Trace>& want) {
    for (const auto& [name, w] : want) {
      const Trace& t = got[name];
      ASSERT_EQ(t.tokens, w.tokens) << "sequence " << name;
      double worst = 0;
      for (size_t s = 0; s < t.logits.size(); ++s)
        for (size_t k = 0; k < t.logits[s].size(); ++k)
          worst = std::max<double>(worst, std::fabs(t.logits[s][k] - w.logits[s][k]));
      EXPECT_LE(worst, 1e-4) << "sequence " << name;
    }
  }
};

TEST_P(DecoderOnBackend, SequencesJoiningAndLeavingMidRunMatchTheirSoloRuns) {
  auto engine = engine_for(GetParam());
  const std::vector<int64_t> pa = {5, 17, 300, 42, 9}, pb = {77, 1, 2, 3, 999, 500, 8},
                             pc = {64, 128, 256, 512, 11, 13};
  std::map<char, Trace> want = {
      {'a', alone(engine, pa, 6)}, {'b', alone(engine, pb, 8)}, {'c', alone(engine, pc, 5)}};

  DecoderConfig c;
  c.slots = 2;
  Decoder d(engine, c);
  SharedRun run{d};
  run.slot_of['a'] = d.acquire();
  run.pass({{'a', &pa}});
  run.pass({{'a', nullptr}});
  run.pass({{'a', nullptr}});
  run.slot_of['b'] = d.acquire();
  EXPECT_EQ(d.acquire(), -1) << "both slots are in use";
  run.pass({{'a', nullptr}, {'b', &pb}});  // b's prefill beside a's decode step
  run.pass({{'b', nullptr}, {'a', nullptr}});
  run.pass({{'a', nullptr}, {'b', nullptr}});
  EXPECT_EQ(d.length(run.slot_of['a']), static_cast<int64_t>(pa.size()) + 5);
  d.release(run.slot_of['a']);  // a leaves after 6 tokens; c takes its slot
  run.slot_of['c'] = d.acquire();
  EXPECT_EQ(run.slot_of['c'], run.slot_of['a']);
  EXPECT_EQ(d.length(run.slot_of['c']), 0);
  run.pass({{'b', nullptr}, {'c', &pc}});
  for (int i = 0; i < 4; ++i) run.pass({{'c', nullptr}, {'b', nullptr}});
  run.expect_solo(want);
}

// Passes that mix prompts of several lengths with decode steps, idle slots beside them (on the
// GPU: packed passes, the tokens of different counts side by side), a one-token prompt, a slot
// reused: every sequence as alone.
TEST_P(DecoderOnBackend, PromptsOfDifferentLengthsBesideDecodeStepsMatchTheirSoloRuns) {
  auto engine = engine_for(GetParam());
  std::map<char, std::vector<int64_t>> prompts;
  std::map<char, Trace> want;
  const std::map<char, int64_t> lengths = {{'a', 5}, {'b', 9}, {'c', 3}, {'d', 11},
                                           {'e', 1}, {'f', 7}, {'g', 2}};
  for (const auto& [name, len] : lengths) {
    for (int64_t i = 0; i < len; ++i) prompts[name].push_back((name * 131 + i * 37) % 1000);
    want[name] = alone(engine, prompts[name], 5);
  }
  DecoderConfig c;
  c.slots = 6;
  Decoder d(engine, c);
  SharedRun run{d};
  auto join = [&](char name) {
    run.slot_of[name] = d.acquire();
    return &prompts[name];
  };
  run.pass({{'a', join('a')}, {'b', join('b')}});  // two of six slots, 5 and 9 tokens
  run.pass({{'a', nullptr}, {'c', join('c')}, {'b', nullptr}, {'d', join('d')}});
  run.pass({{'d', nullptr}, {'a', nullptr}, {'b', nullptr}, {'c', nullptr}, {'e', join('e')}});
  run.pass({{'a', nullptr}, {'b', nullptr}, {'c', nullptr}, {'d', nullptr}, {'e', nullptr}});
  run.pass({{'b', nullptr},
            {'f', join('f')},
            {'c', nullptr},
            {'a', nullptr},
            {'e', nullptr},
            {'d', nullptr}});  // a's and b's fifth pick
  d.release(run.slot_of['a']);
  d.release(run.slot_of['b']);
  run.pass({{'g', join('g')}, {'c', nullptr}, {'f', nullptr}, {'d', nullptr}, {'e', nullptr}});
  run.pass({{'f', nullptr}, {'g', nullptr}, {'e', nullptr}});  // c's, d's and e's fifth
  for (int i = 0; i < 2; ++i) run.pass({{'g', nullptr}, {'f', nullptr}});
  run.pass({{'g', nullptr}});
  EXPECT_EQ(run.got.size(), 7u);
  for (const auto& [name, trace] : run.got) EXPECT_EQ(trace.tokens.size(), 5u) << name;
  run.expect_solo(want);
}

TEST_P(DecoderOnBackend, LongPromptsInChunksGiveTheLogitsOfOnePass) {
  auto engine = engine_for(GetParam());
  std::vector<int64_t> prompt;
  for (int64_t i = 0; i < 23; ++i) prompt.push_back((i * 37 + 5) % 1000);
  std::vector<float> one, chunked;
  std::vector<int64_t> one_pick, chunked_pick;
  {
    Decoder d(engine, {});
    int s = d.acquire();
    d.run({{s, prompt.data(), 23}}, &one, &one_pick);
  }
  DecoderConfig c;
  c.prefill_chunk = 5;
  Decoder d(engine, c);
  int s = d.acquire();
  d.run({{s, prompt.data(), 23}}, &chunked, &chunked_pick);
  EXPECT_EQ(d.length(s), 23);
  ASSERT_EQ(one.size(), chunked.size());
  double worst = 0;
  for (size_t i = 0; i < one.size(); ++i)
    worst = std::max<double>(worst, std::fabs(one[i] - chunked[i]));
  EXPECT_LE(worst, 1e-4);
  EXPECT_EQ(one_pick, chunked_pick);
  EXPECT_EQ(one_pick[0], pick(one.data(), d.vocab_size()));
}

INSTANTIATE_TEST_SUITE_P(Backends, DecoderOnBackend,
                         ::testing::Values(Backend::kCpu, Backend::kCuda),
                         [](const auto& p) { return std::string(backend_name(p.param)); });

TEST(Decoder, RefusesMisuseSayingWhat) {
  auto engine = engine_for(Backend::kCpu);
  DecoderConfig c;
  c.slots = 2;
  c.max_positions = 10;
  Decoder d(engine, c);
  EXPECT_EQ(d.capacity(), 10);
  const std::vector<int64_t> ids = {1, 2, 3};
  expect_error([&] { d.run({{0, ids.data(), 3}}, nullptr, nullptr); }, {"slot 0", "acquire()"});
  int s = d.acquire();
  expect_error(
      [&] {
        d.run({{s, ids.data(), 3}, {s, ids.data(), 1}}, nullptr, nullptr);
      },
      {"appears twice"});
  expect_error([&] { d.run({{7, ids.data(), 3}}, nullptr, nullptr); }, {"slot 7", "0..1"});
  expect_error([&] { d.run({{s, ids.data(), 0}}, nullptr, nullptr); }, {"no tokens"});
  const std::vector<int64_t> bad = {1, 1000};
  expect_error(
      [&] {
        d.run({{s, bad.data(), 2}}, nullptr, nullptr);
      },
      {"token id 1000", "[0, 1000)"});
  std::vector<int64_t> eleven(11, 1);
  expect_error(
      [&] {
        d.run({{s, eleven.data(), 11}}, nullptr, nullptr);
      },
      {"11 more", "capacity of 10"});
  EXPECT_EQ(d.length(s), 0) << "a refused pass changes nothing";
  expect_error([&] { d.release(1); }, {"slot 1", "not acquired"});
  std::vector<int64_t> picks;
  d.run({{s, ids.data(), 3}}, nullptr, &picks);
  expect_error([&] { d.greedy_steps({{s, ids.data(), 1}}, 2, picks); }, {"allows 1..1"});
  expect_error([&] { Decoder(engine, DecoderConfig{0, 0, 0, 1}); }, {"slots must be 1..4096"});
  expect_error(
      [&] {
        Decoder(engine, DecoderConfig{1, 65, 0, 1});
      },
      {"max_positions must be 1..64", "found 65"});
  BuildConfig ref;
  ref.backend = Backend::kReference;
  auto reference =
      Engine::build(Network::from_onnx(data_path("gpt2-tiny/legacy-opset17.onnx")), ref);
  expect_error([&] { Decoder(reference, {}); }, {"reference backend", "--backend cpu"});
}

}  // namespace
}  // namespace gptrt::test

// The Generator: Hugging Face `generate` semantics (greedy or sampled, the same logits
// processors in the same order, stop rules, streaming) on a gptrt::Decoder, whatever its
// backend. Each prompt gets a slot of its own: no padding, positions counted from its first token
// (what Hugging Face derives from a left-padded batch's attention mask); a finished row leaves the
// pass.
#include <algorithm>
#include <random>

#include "generate/sampling.h"
#include "gptrt/decoder.h"
#include "gptrt/error.h"
#include "gptrt/generate.h"
#include "platform/platform.h"

namespace gptrt {

struct Generator::Impl {
  std::shared_ptr<const Engine> engine;
  int threads;
  // The decoder of the last call; a call of the same batch and length reuses it (on the GPU its
  // captured graphs too).
  std::unique_ptr<Decoder> decoder;
  int64_t chunk = 0;          // the decoder's prefill chunk
  std::vector<float> logits;  // the last pass's, when asked for

  Impl(std::shared_ptr<const Engine> e, int t)
      : engine(std::move(e)),
        threads(t),
        // One slot of one position checks the engine and tells its sizes at little cost;
        // generate() makes the decoder its batch needs.
        decoder(std::make_unique<Decoder>(engine, config(1, 1))) {}

  DecoderConfig config(int64_t slots, int64_t positions) const {
    DecoderConfig c;
    c.slots = slots;
    c.max_positions = positions;
    c.threads = threads;
    return c;
  }

  Decoder& decoder_for(int64_t slots, int64_t positions, int64_t prompt) {
    if (decoder->slots() != slots || decoder->capacity() != positions || chunk < prompt) {
      DecoderConfig c = config(slots, positions);
      c.prefill_chunk = std::max<int64_t>(prompt, 1);
      // Made before the old one goes, so that what they share per engine (the GPU's copy of the
      // weights) stays up.
      decoder = std::make_unique<Decoder>(engine, c);
      chunk = c.prefill_chunk;
    }
    return *decoder;
  }
};

Generator::Generator(std::shared_ptr<const Engine> engine, int threads)
    : impl_(std::make_unique<Impl>(std::move(engine), threads)) {}
Generator::~Generator() = default;

const std::vector<float>& Generator::last_logits() const {
  return impl_->decoder->last_logits();
}
int64_t Generator::vocab_size() const {
  return impl_->decoder->vocab_size();
}
int64_t Generator::n_positions() const {
  return impl_->decoder->n_positions();
}

GenerationResult Generator::generate(const std::vector<std::vector<int64_t>>& prompts,
                                     const GenerationConfig& c, const TokenCallback& on_token) {
  Impl& m = *impl_;
  const int64_t vocab_size = m.decoder->vocab_size(), n_positions = m.decoder->n_positions();
  if (prompts.empty()) throw Error(ErrorCode::kInvalidArgument, "generate: no prompts given");
  if (c.max_new_tokens < 1)
    throw Error(ErrorCode::kInvalidArgument,
                "max_new_tokens must be at least 1, found " + std::to_string(c.max_new_tokens));
  if (c.do_sample && !(c.temperature > 0))
    throw Error(ErrorCode::kInvalidArgument, "temperature must be > 0 when sampling");
  if (!(c.top_p > 0 && c.top_p <= 1))
    throw Error(ErrorCode::kInvalidArgument, "top_p must be in (0, 1]");
  if (!(c.repetition_penalty > 0))
    throw Error(ErrorCode::kInvalidArgument, "repetition_penalty must be > 0");
  if (c.pad_token_id < 0 || c.pad_token_id >= vocab_size)
    throw Error(ErrorCode::kInvalidArgument, "pad token id " + std::to_string(c.pad_token_id) +
                                                 " is outside the vocabulary [0, " +
                                                 std::to_string(vocab_size) + ")");
  int64_t b = static_cast<int64_t>(prompts.size()), len = 0;
  for (size_t r = 0; r < prompts.size(); ++r) {
    if (prompts[r].empty())
      throw Error(ErrorCode::kInvalidArgument, "prompt " + std::to_string(r) + " is empty");
    for (int64_t id : prompts[r]) {
      if (id < 0 || id >= vocab_size)
        throw Error(ErrorCode::kInvalidArgument, "prompt " + std::to_string(r) + ": token id " +
                                                     std::to_string(id) +
                                                     " is outside the model's vocabulary [0, " +
                                                     std::to_string(vocab_size) + ")");
    }
    len = std::max<int64_t>(len, static_cast<int64_t>(prompts[r].size()));
  }
  if (c.max_new_tokens > n_positions - len)  // (no len + max_new_tokens: it may overflow)
    throw Error(ErrorCode::kShapeError,
                "a prompt of " + std::to_string(len) + " tokens plus " +
                    std::to_string(c.max_new_tokens) + " new tokens exceeds the model's " +
                    std::to_string(n_positions) +
                    " positions; shorten the prompt, lower the new-token count, or truncate the "
                    "prompt (gptrt generate --truncate)");
  Decoder& d = m.decoder_for(b, len + c.max_new_tokens, len);
  // Every slot back to the decoder when the call ends, however it ends.
  struct Slots {
    Decoder& d;
    std::vector<int> of_row;  // -1 once released
    ~Slots() {
      for (int s : of_row)
        if (s >= 0) d.release(s);
    }
  } slots{d, {}};
  for (int64_t r = 0; r < b; ++r) slots.of_row.push_back(d.acquire());

  GenerationResult result;
  result.generated.resize(static_cast<size_t>(b));
  std::vector<std::vector<int64_t>> seen(prompts.begin(), prompts.end());
  std::vector<SlotTokens> seqs;
  std::vector<size_t> rows;  // the rows in seqs, in order
  for (int64_t r = 0; r < b; ++r) {
    const auto& p = prompts[static_cast<size_t>(r)];
    seqs.push_back(
        {slots.of_row[static_cast<size_t>(r)], p.data(), static_cast<int64_t>(p.size())});
    rows.push_back(static_cast<size_t>(r));
    result.timings.prompt_tokens += static_cast<int64_t>(p.size());
  }
  // Greedy without a repetition penalty needs only each row's argmax: the decoder picks it where
  // the logits are (on the GPU, so that they are not copied).
  const bool greedy = !c.do_sample && c.repetition_penalty == 1.0f;
  std::vector<int64_t> picks(static_cast<size_t>(b));  // per row
  std::vector<int64_t> argmax;
  auto pass = [&] {
    d.run(seqs, greedy ? nullptr : &m.logits, greedy ? &argmax : nullptr);
    for (size_t i = 0; greedy && i < rows.size(); ++i) picks[rows[i]] = argmax[i];
  };
  double t0 = platform::now_seconds();
  pass();
  double t1 = platform::now_seconds();
  result.timings.prefill_ms = (t1 - t0) * 1e3;

  std::mt19937_64 rng(c.seed);
  std::vector<char> finished(static_cast<size_t>(b), 0);
  std::vector<int64_t> next(static_cast<size_t>(b));
  int64_t steps = 0, produced = 0;
  // Greedy decode steps several at a time where the decoder allows it now (on the GPU: up to 8
  // per CUDA graph), their picks queued [step][row of queued_rows] and taken one step per
  // iteration as if each had just run. A stop inside them leaves the later picks unused.
  std::vector<int64_t> queued;
  std::vector<size_t> queued_rows;
  size_t queued_at = 0;
  std::vector<float> row(static_cast<size_t>(m.decoder->vocab_size()));
  const int64_t vocab = m.decoder->vocab_size();
  for (int64_t n = 0; n < c.max_new_tokens; ++n) {
    for (size_t i = 0; i < rows.size(); ++i) {
      size_t r = rows[i];
      int64_t tok = picks[r];
      if (!greedy) {
        std::copy_n(m.logits.begin() + static_cast<std::ptrdiff_t>(i) * vocab, vocab, row.begin());
        tok = generate::pick_token(row, seen[r], c, rng);
      }
      result.generated[r].push_back(tok);
      seen[r].push_back(tok);
      next[r] = tok;
      ++produced;
      if (tok == c.eos_token_id) finished[r] = 1;
      if (on_token && !on_token(r, tok)) finished[r] = 1;
    }
    // Finished rows leave the pass and give back their slots.
    size_t kept = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      size_t r = rows[i];
      if (finished[r]) {
        d.release(slots.of_row[r]);
        slots.of_row[r] = -1;
        continue;
      }
      rows[kept++] = r;
    }
    rows.resize(kept);
    if (n + 1 == c.max_new_tokens || rows.empty()) break;
    seqs.clear();
    for (size_t r : rows) seqs.push_back({slots.of_row[r], &next[r], 1});
    const int64_t left = c.max_new_tokens - 1 - n;  // decode steps this call may still run
    if (queued_at < queued.size()) {
      for (size_t j = 0; j < queued_rows.size(); ++j) picks[queued_rows[j]] = queued[queued_at + j];
      queued_at += queued_rows.size();
    } else if (greedy && left > 1 && d.max_greedy_steps(seqs) > 1) {
      const int64_t k = std::min(d.max_greedy_steps(seqs), left);
      d.greedy_steps(seqs, k, queued);
      queued_rows = rows;
      for (size_t j = 0; j < rows.size(); ++j) picks[rows[j]] = queued[j];
      queued_at = rows.size();
    } else {
      pass();
    }
    ++steps;
  }
  double t2 = platform::now_seconds();
  result.timings.decode_ms_per_token = steps > 0 ? (t2 - t1) * 1e3 / static_cast<double>(steps) : 0;
  result.timings.tokens_per_s = static_cast<double>(produced) / std::max(t2 - t0, 1e-9);
  return result;
}

}  // namespace gptrt

// gptrt::Decoder: slot bookkeeping and input checks over a backend's SlotDecoder, and long
// inputs split into prefill chunks.
#include "gptrt/decoder.h"

#include <algorithm>
#include <cstring>

#include "backends/backend.h"
#include "gptrt/error.h"
#include "runtime/engine_impl.h"
#include "runtime/plan_ref.h"

namespace gptrt {

struct Decoder::Impl {
  std::shared_ptr<const Engine> engine;
  backends::DecoderPlan plan;
  backends::DecoderShape shape;
  std::unique_ptr<backends::SlotDecoder> backend;
  std::vector<char> in_use;
  std::vector<int64_t> length;
  std::vector<float> logits;  // last_logits()'s copy
  // Scratch of run() and check(), kept so that a decode step allocates nothing.
  mutable std::vector<char> seen;
  std::vector<int64_t> done, index, pass_argmax;
  std::vector<backends::SlotTokens> pass;
  std::vector<float> pass_logits;

  void check(const std::vector<SlotTokens>& seqs) const {
    if (seqs.empty()) throw Error(ErrorCode::kInvalidArgument, "decoder: a pass needs sequences");
    seen.assign(in_use.size(), 0);
    for (const SlotTokens& s : seqs) {
      std::string at = "decoder slot " + std::to_string(s.slot);
      if (s.slot < 0 || s.slot >= static_cast<int>(in_use.size()))
        throw Error(
            ErrorCode::kInvalidArgument,
            at + " does not exist; this decoder has slots 0.." + std::to_string(in_use.size() - 1));
      if (!in_use[static_cast<size_t>(s.slot)])
        throw Error(ErrorCode::kInvalidArgument, at + " is not acquired; call acquire() first");
      if (seen[static_cast<size_t>(s.slot)]++)
        throw Error(ErrorCode::kInvalidArgument, at + " appears twice in one pass");
      if (s.count < 1 || !s.tokens)
        throw Error(ErrorCode::kInvalidArgument, at + " is given no tokens");
      int64_t len = length[static_cast<size_t>(s.slot)];
      if (s.count > shape.capacity - len)
        throw Error(ErrorCode::kShapeError,
                    at + " holds " + std::to_string(len) + " tokens; " + std::to_string(s.count) +
                        " more exceed its capacity of " + std::to_string(shape.capacity) +
                        " (the model's n_positions, or DecoderConfig::max_positions); shorten the "
                        "prompt or generate fewer tokens");
      for (int64_t j = 0; j < s.count; ++j) {
        if (s.tokens[j] < 0 || s.tokens[j] >= plan.vocab)
          throw Error(ErrorCode::kInvalidArgument,
                      at + ": token id " + std::to_string(s.tokens[j]) + " at " +
                          std::to_string(j) + " is outside the model's vocabulary [0, " +
                          std::to_string(plan.vocab) + ")");
      }
    }
  }
};

Decoder::Decoder(std::shared_ptr<const Engine> engine, const DecoderConfig& config)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.engine = std::move(engine);
  const backends::Backend& backend = backends::get(m.engine->info().backend);
  const ir::Graph& g = m.engine->impl().graph;
  // Which nodes are embedding, attention and head; the backend checks that it runs them all.
  backends::DecoderPlan found;
  try {
    found = backends::find_decoder_plan(g, g.nodes.empty() ? "" : g.nodes.back().op_type,
                                        [](const ir::Node&) { return true; });
  } catch (const Error&) {
    backend.make_decoder(plan_ref(m.engine), {}, config.threads);  // says why, in its words
    throw;
  }
  m.plan = found;
  if (config.slots < 1 || config.slots > 4096)
    throw Error(ErrorCode::kInvalidArgument,
                "decoder slots must be 1..4096, found " + std::to_string(config.slots));
  int64_t cap = config.max_positions == 0 ? m.plan.n_positions : config.max_positions;
  if (cap < 1 || cap > m.plan.n_positions)
    throw Error(ErrorCode::kInvalidArgument,
                "decoder max_positions must be 1.." + std::to_string(m.plan.n_positions) +
                    " (the model's n_positions), found " + std::to_string(config.max_positions));
  int64_t chunk = config.prefill_chunk == 0 ? 512 : config.prefill_chunk;
  if (chunk < 1)
    throw Error(ErrorCode::kInvalidArgument,
                "decoder prefill_chunk must be >= 1, found " + std::to_string(chunk));
  m.shape = {config.slots, cap, std::min(chunk, cap)};
  m.backend = backend.make_decoder(plan_ref(m.engine), m.shape, config.threads);
  m.in_use.assign(static_cast<size_t>(config.slots), 0);
  m.length.assign(static_cast<size_t>(config.slots), 0);
}

Decoder::~Decoder() = default;

int64_t Decoder::slots() const {
  return impl_->shape.slots;
}
int64_t Decoder::capacity() const {
  return impl_->shape.capacity;
}
int64_t Decoder::vocab_size() const {
  return impl_->plan.vocab;
}
int64_t Decoder::n_positions() const {
  return impl_->plan.n_positions;
}

int Decoder::acquire() {
  for (size_t s = 0; s < impl_->in_use.size(); ++s) {
    if (impl_->in_use[s]) continue;
    impl_->in_use[s] = 1;
    return static_cast<int>(s);
  }
  return -1;
}

void Decoder::release(int slot) {
  if (slot < 0 || slot >= static_cast<int>(impl_->in_use.size()) ||
      !impl_->in_use[static_cast<size_t>(slot)])
    throw Error(ErrorCode::kInvalidArgument,
                "decoder slot " + std::to_string(slot) + " is not acquired; nothing to release");
  impl_->in_use[static_cast<size_t>(slot)] = 0;
  impl_->length[static_cast<size_t>(slot)] = 0;
  impl_->backend->reset(slot);
}

int64_t Decoder::length(int slot) const {
  if (slot < 0 || slot >= static_cast<int>(impl_->length.size()))
    throw Error(ErrorCode::kInvalidArgument, "decoder slot " + std::to_string(slot) +
                                                 " does not exist (slots 0.." +
                                                 std::to_string(impl_->length.size() - 1) + ")");
  return impl_->length[static_cast<size_t>(slot)];
}

void Decoder::run(const std::vector<SlotTokens>& seqs, std::vector<float>* logits,
                  std::vector<int64_t>* argmax) {
  Impl& m = *impl_;
  m.check(seqs);
  const int64_t n = static_cast<int64_t>(seqs.size()), vocab = m.plan.vocab;
  if (logits) logits->resize(static_cast<size_t>(n * vocab));
  if (argmax) argmax->resize(static_cast<size_t>(n));
  // Passes of at most max_prompt tokens per sequence; a sequence's results come from the pass
  // that takes its last tokens.
  std::vector<int64_t>& done = m.done;
  std::vector<backends::SlotTokens>& pass = m.pass;
  std::vector<int64_t>& index = m.index;
  std::vector<float>& pass_logits = m.pass_logits;
  std::vector<int64_t>& pass_argmax = m.pass_argmax;
  done.assign(static_cast<size_t>(n), 0);
  for (;;) {
    pass.clear();
    index.clear();
    for (int64_t i = 0; i < n; ++i) {
      const SlotTokens& s = seqs[static_cast<size_t>(i)];
      int64_t from = done[static_cast<size_t>(i)];
      if (from == s.count) continue;
      int64_t take = std::min(m.shape.max_prompt, s.count - from);
      pass.push_back({s.slot, s.tokens + from, take});
      index.push_back(i);
      done[static_cast<size_t>(i)] += take;
    }
    if (pass.empty()) break;
    const size_t pn = pass.size();
    pass_logits.resize(logits ? pn * static_cast<size_t>(vocab) : 0);
    pass_argmax.resize(argmax ? pn : 0);
    m.backend->run(pass, logits ? pass_logits.data() : nullptr,
                   argmax ? pass_argmax.data() : nullptr);
    for (size_t p = 0; p < pn; ++p) {
      size_t i = static_cast<size_t>(index[p]);
      m.length[static_cast<size_t>(pass[p].slot)] += pass[p].count;
      if (done[i] != seqs[i].count) continue;
      if (logits)
        std::memcpy(logits->data() + i * static_cast<size_t>(vocab),
                    pass_logits.data() + p * static_cast<size_t>(vocab),
                    static_cast<size_t>(vocab) * 4);
      if (argmax) (*argmax)[i] = pass_argmax[p];
    }
  }
}

int64_t Decoder::shared_positions_left() const {
  return impl_->backend->shared_positions_left();
}

int64_t Decoder::max_greedy_steps(const std::vector<SlotTokens>& seqs) const {
  return impl_->backend->max_greedy_steps(seqs);
}

void Decoder::greedy_steps(const std::vector<SlotTokens>& seqs, int64_t steps,
                           std::vector<int64_t>& picks) {
  Impl& m = *impl_;
  m.check(seqs);
  int64_t most = m.backend->max_greedy_steps(seqs);
  if (steps < 1 || steps > most)
    throw Error(ErrorCode::kInvalidArgument, "decoder: " + std::to_string(steps) +
                                                 " greedy steps asked, this pass allows 1.." +
                                                 std::to_string(most));
  for (const SlotTokens& s : seqs) {
    if (s.count != 1)
      throw Error(ErrorCode::kInvalidArgument,
                  "decoder: greedy steps take one token per sequence, slot " +
                      std::to_string(s.slot) + " has " + std::to_string(s.count));
    if (m.length[static_cast<size_t>(s.slot)] + steps > m.shape.capacity)
      throw Error(ErrorCode::kShapeError,
                  "decoder slot " + std::to_string(s.slot) + ": " + std::to_string(steps) +
                      " steps exceed its capacity of " + std::to_string(m.shape.capacity));
  }
  picks.resize(static_cast<size_t>(steps) * seqs.size());
  m.backend->greedy_steps(seqs, steps, picks.data());
  for (const SlotTokens& s : seqs) m.length[static_cast<size_t>(s.slot)] += steps;
}

const std::vector<float>& Decoder::last_logits() {
  impl_->backend->last_logits(impl_->logits);
  return impl_->logits;
}

}  // namespace gptrt

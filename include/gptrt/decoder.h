// A KV-cache decoder over slots, on any backend that recognised the GPT-2 decoder: each slot holds
// one sequence with its own length; one pass prefills some slots and steps others (different
// lengths in one pass); a slot is freed and reused while the others go on. The cache is planned
// once when the decoder is made and never grows. This is what the Generator and a
// continuous-batching server sit on.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "gptrt/engine.h"

namespace gptrt {

/// One sequence's share of a pass: `count` tokens appended to `slot`.
struct SlotTokens {
  int slot = 0;
  const int64_t* tokens = nullptr;
  int64_t count = 0;
};

/// Sizes of a decoder's cache.
struct DecoderConfig {
  int64_t slots = 1;          // sequences held at once
  int64_t max_positions = 0;  // tokens per slot (prompt + generated); 0 = the model's n_positions
  int64_t prefill_chunk = 0;  // longest pass over one slot; longer inputs go in chunks (0 = 512)
  int threads = 0;            // CPU threads (0 = every core)
};

class Decoder {
 public:
  /// Needs an engine whose GPT-2 decoder was recognised; throws gptrt::Error saying why not.
  Decoder(std::shared_ptr<const Engine> engine, const DecoderConfig& config = {});
  ~Decoder();

  int64_t slots() const;
  /// Tokens a slot can hold.
  int64_t capacity() const;
  int64_t vocab_size() const;
  int64_t n_positions() const;

  /// Takes a free slot (empty), or returns -1 when every slot is in use.
  int acquire();
  /// Frees `slot` and drops its tokens; the other slots are untouched.
  void release(int slot);
  /// Tokens `slot` holds.
  int64_t length(int slot) const;

  /// One pass: appends each sequence's tokens to its slot (its positions continue from the
  /// slot's length), then gives for each sequence's last token the logits (`logits` resized to
  /// [seqs, vocab]) and/or the argmax (`argmax` resized to [seqs]); either may be null. Inputs
  /// longer than the prefill chunk run in several passes. Throws for a slot not acquired or
  /// named twice, an empty sequence, ids outside the vocabulary, or more tokens than a slot holds.
  void run(const std::vector<SlotTokens>& seqs, std::vector<float>* logits,
           std::vector<int64_t>* argmax);
  /// Positions left in a cache that every slot's passes share (the CUDA decoder: a pass of t
  /// tokens takes t of them for every slot; all free again once every slot is empty), or -1 where
  /// each slot has its own capacity (cpu). A scheduler admits work that fits.
  int64_t shared_positions_left() const;
  /// Greedy decode steps one greedy_steps call may run now over `seqs` (1: use run()). The CUDA
  /// backend runs up to 8 per CUDA graph once 256 steps have run one at a time.
  int64_t max_greedy_steps(const std::vector<SlotTokens>& seqs) const;
  /// `steps` greedy decode steps (1 <= steps <= max_greedy_steps(seqs)): the first feeds `seqs`
  /// (one token each), each later one every sequence's pick of the step before. `picks` gets
  /// [steps][seqs]. Each slot grows by `steps`.
  void greedy_steps(const std::vector<SlotTokens>& seqs, int64_t steps,
                    std::vector<int64_t>& picks);
  /// Logits [seqs, vocab] of the last pass's sequences (the last step's after greedy_steps).
  const std::vector<float>& last_logits();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace gptrt

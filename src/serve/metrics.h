// What the server counts, in Prometheus' text format (GET /metrics): requests running and
// waiting, KV slots in use, time to first token, inter-token latency and request latency
// histograms, prompt and generated token counters, tokens/s over the last 10 s, rejections; the
// decoder's passes (decode steps and passes with prompt tokens: durations, sequences).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

namespace gptrt::serve {

/// A Prometheus histogram of seconds with fixed bucket bounds.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double seconds);
  /// The _bucket, _sum and _count lines of metric `name`.
  std::string text(const std::string& name, const std::string& help) const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<int64_t> counts_;  // per bucket, not cumulative; one more for +Inf
  double sum_ = 0;
  int64_t count_ = 0;
};

struct SchedulerGauges {
  int64_t running = 0, waiting = 0, slots = 0, slots_in_use = 0;
};

class Metrics {
 public:
  Metrics();
  std::atomic<int64_t> requests{0};          // accepted
  std::atomic<int64_t> rejected_full{0};     // 429: queue full
  std::atomic<int64_t> rejected_invalid{0};  // 4xx: bad requests
  std::atomic<int64_t> cancelled{0};         // client gone or cancelled
  std::atomic<int64_t> deadline_exceeded{0};
  std::atomic<int64_t> prompt_tokens{0};
  std::atomic<int64_t> generated_tokens{0};
  std::atomic<int64_t> step_sequences{0};  // sequences over all passes
  Histogram time_to_first_token, inter_token_latency, request_latency;
  // The decoder's passes: those of one new token per sequence, and those carrying prompt tokens.
  Histogram decode_step, prefill_step;

  /// Counts `n` generated tokens now (for the tokens/s gauge).
  void tokens_generated(int64_t n);
  std::string prometheus(const SchedulerGauges& g) const;

 private:
  using Clock = std::chrono::steady_clock;
  mutable std::mutex mu_;
  std::deque<std::pair<Clock::time_point, int64_t>> recent_;  // the last 10 s of tokens
};

}  // namespace gptrt::serve

#include "serve/metrics.h"

#include <cstdio>
#include <sstream>

namespace gptrt::serve {
namespace {

std::string num(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.9g", v);
  return b;
}

std::vector<double> latency_bounds() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t b = 0;
  while (b < bounds_.size() && seconds > bounds_[b]) ++b;
  ++counts_[b];
  sum_ += seconds;
  ++count_;
}

std::string Histogram::text(const std::string& name, const std::string& help) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::ostringstream os;
  os << "# HELP " << name << " " << help << "\n# TYPE " << name << " histogram\n";
  int64_t cumulative = 0;
  for (size_t b = 0; b < bounds_.size(); ++b) {
    cumulative += counts_[b];
    os << name << "_bucket{le=\"" << num(bounds_[b]) << "\"} " << cumulative << "\n";
  }
  os << name << "_bucket{le=\"+Inf\"} " << count_ << "\n";
  os << name << "_sum " << num(sum_) << "\n" << name << "_count " << count_ << "\n";
  return os.str();
}

Metrics::Metrics()
    : time_to_first_token(latency_bounds()),
      inter_token_latency(latency_bounds()),
      request_latency(latency_bounds()),
      decode_step(latency_bounds()),
      prefill_step(latency_bounds()) {}

void Metrics::tokens_generated(int64_t n) {
  generated_tokens += n;
  std::lock_guard<std::mutex> lock(mu_);
  Clock::time_point now = Clock::now();
  recent_.emplace_back(now, n);
  while (!recent_.empty() && now - recent_.front().first > std::chrono::seconds(10))
    recent_.pop_front();
}

std::string Metrics::prometheus(const SchedulerGauges& g) const {
  double per_s = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Clock::time_point now = Clock::now();
    for (const auto& [t, n] : recent_)
      if (now - t <= std::chrono::seconds(10)) per_s += static_cast<double>(n);
    per_s /= 10.0;
  }
  std::ostringstream os;
  auto gauge = [&](const char* name, const char* help, double v) {
    os << "# HELP " << name << " " << help << "\n# TYPE " << name << " gauge\n"
       << name << " " << num(v) << "\n";
  };
  auto counter = [&](const char* name, const char* help, int64_t v) {
    os << "# HELP " << name << " " << help << "\n# TYPE " << name << " counter\n"
       << name << " " << v << "\n";
  };
  gauge("gptrt_requests_running", "Requests holding a KV slot.", double(g.running));
  gauge("gptrt_requests_waiting", "Requests queued for a KV slot.", double(g.waiting));
  gauge("gptrt_kv_slots", "KV-cache slots of the decoder.", double(g.slots));
  gauge("gptrt_kv_slots_in_use", "KV-cache slots holding a sequence.", double(g.slots_in_use));
  gauge("gptrt_generation_tokens_per_second", "Generated tokens per second over the last 10 s.",
        per_s);
  counter("gptrt_requests_total", "Requests accepted.", requests.load());
  counter("gptrt_requests_rejected_total", "Requests refused with 429 (queue full).",
          rejected_full.load());
  counter("gptrt_requests_invalid_total", "Requests refused as invalid (4xx).",
          rejected_invalid.load());
  counter("gptrt_requests_cancelled_total", "Requests whose client went away or cancelled.",
          cancelled.load());
  counter("gptrt_requests_deadline_exceeded_total", "Requests stopped at their deadline.",
          deadline_exceeded.load());
  counter("gptrt_prompt_tokens_total", "Prompt tokens prefilled.", prompt_tokens.load());
  counter("gptrt_generation_tokens_total", "Tokens generated.", generated_tokens.load());
  os << time_to_first_token.text("gptrt_time_to_first_token_seconds",
                                 "Time from arrival to the first generated token.");
  os << inter_token_latency.text("gptrt_inter_token_latency_seconds",
                                 "Time between consecutive tokens of a request.");
  os << request_latency.text("gptrt_request_latency_seconds",
                             "Time from arrival to the last token.");
  counter("gptrt_step_sequences_total", "Sequences over all decoder passes (per pass: the batch).",
          step_sequences.load());
  os << decode_step.text("gptrt_decode_step_seconds",
                         "Decoder passes of one new token per sequence, host to host.");
  os << prefill_step.text("gptrt_prefill_step_seconds",
                          "Decoder passes carrying prompt tokens (with the decoding sequences).");
  return os.str();
}

}  // namespace gptrt::serve

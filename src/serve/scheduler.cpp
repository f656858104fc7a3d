#include "serve/scheduler.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "generate/sampling.h"
#include "gptrt/error.h"

namespace gptrt::serve {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

DecoderConfig decoder_config(const SchedulerConfig& c) {
  DecoderConfig d;
  d.slots = c.slots;
  d.max_positions = c.max_positions;
  d.prefill_chunk = c.prefill_chunk;
  d.threads = c.threads;
  return d;
}

// The chosen token's logprob and the `k` most likely tokens', from raw logits.
void fill_logprobs(const float* l, int64_t vocab, int64_t chosen, int64_t k, TokenEvent& ev) {
  double mx = -INFINITY;
  for (int64_t v = 0; v < vocab; ++v) mx = std::max(mx, double(l[v]));
  double sum = 0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(double(l[v]) - mx);
  const double log_z = mx + std::log(sum);
  ev.logprob = double(l[chosen]) - log_z;
  if (k <= 0) return;
  std::vector<int64_t> ids(static_cast<size_t>(vocab));
  for (int64_t v = 0; v < vocab; ++v) ids[static_cast<size_t>(v)] = v;
  const int64_t n = std::min(k, vocab);
  std::partial_sort(ids.begin(), ids.begin() + n, ids.end(),
                    [&](int64_t a, int64_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
  for (int64_t i = 0; i < n; ++i)
    ev.top.emplace_back(ids[static_cast<size_t>(i)],
                        double(l[ids[static_cast<size_t>(i)]]) - log_z);
}

}  // namespace

// A request holding a slot: its tokens so far and where its prompt stands.
struct Scheduler::Active {
  std::shared_ptr<Request> req;
  int slot = -1;
  int64_t fed = 0;            // prompt tokens already in the slot
  std::vector<int64_t> seen;  // prompt + generated (the repetition penalty's memory)
  int64_t generated = 0;
  int64_t next = -1;  // the token to feed next step (once the prompt is in)
  std::mt19937_64 rng;
  Clock::time_point arrived, last_token;
  bool done = false;
};

Scheduler::Scheduler(std::shared_ptr<const Engine> engine, const SchedulerConfig& config,
                     std::shared_ptr<Metrics> metrics)
    : decoder_(std::move(engine), decoder_config(config)),
      config_(config),
      metrics_(std::move(metrics)),
      vocab_(decoder_.vocab_size()),
      positions_(decoder_.capacity()) {
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    draining_ = true;
    stopped_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Scheduler::submit(std::shared_ptr<Request> r) {
  if (r->prompt.empty()) throw Error(ErrorCode::kInvalidArgument, "the prompt is empty");
  for (int64_t id : r->prompt)
    if (id < 0 || id >= vocab_)
      throw Error(ErrorCode::kInvalidArgument, "token id " + std::to_string(id) +
                                                   " is outside the model's vocabulary [0, " +
                                                   std::to_string(vocab_) + ")");
  const int64_t len = static_cast<int64_t>(r->prompt.size());
  if (r->config.max_new_tokens < 1)
    throw Error(ErrorCode::kInvalidArgument,
                "max_tokens must be at least 1, found " + std::to_string(r->config.max_new_tokens));
  if (len >= positions_ || r->config.max_new_tokens > positions_ - len)
    throw Error(ErrorCode::kShapeError, "the prompt's " + std::to_string(len) +
                                            " tokens plus max_tokens " +
                                            std::to_string(r->config.max_new_tokens) +
                                            " exceed the model's " + std::to_string(positions_) +
                                            " positions; shorten the prompt or lower max_tokens");
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_ || static_cast<int64_t>(queue_.size()) >= config_.max_queue) return false;
    queue_.push_back(std::move(r));
  }
  cv_.notify_all();
  return true;
}

void Scheduler::drain() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    draining_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

SchedulerGauges Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  SchedulerGauges s;
  s.running = running_.load();
  s.waiting = static_cast<int64_t>(queue_.size());
  s.slots = config_.slots;
  s.slots_in_use = running_.load();
  return s;
}

void Scheduler::loop() {
  std::vector<Active> active;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopped_ || draining_ || !queue_.empty() || !active.empty(); });
      if (stopped_ && active.empty() && queue_.empty()) return;
      if (draining_ && active.empty() && queue_.empty()) return;
      // Join newly arrived requests to the running batch while slots are free (and, where the
      // slots share one cache's positions, while the work in flight and theirs still fits).
      while (!queue_.empty() && static_cast<int64_t>(active.size()) < config_.slots &&
             fits_shared_positions(active, *queue_.front())) {
        Active a;
        a.req = std::move(queue_.front());
        queue_.pop_front();
        a.slot = decoder_.acquire();
        a.seen = a.req->prompt;
        a.rng.seed(a.req->config.seed);
        a.arrived = Clock::now();
        active.push_back(std::move(a));
      }
      running_ = static_cast<int64_t>(active.size());
    }
    step(active);
    // Retire finished requests at once: their slots serve the next arrivals.
    for (Active& a : active)
      if (a.done) decoder_.release(a.slot);
    active.erase(
        std::remove_if(active.begin(), active.end(), [](const Active& a) { return a.done; }),
        active.end());
    running_ = static_cast<int64_t>(active.size());
  }
}

bool Scheduler::fits_shared_positions(const std::vector<Active>& active, const Request& r) const {
  const int64_t left = decoder_.shared_positions_left();
  if (left < 0) return true;  // every slot has its own positions
  // Conservatively: every prompt token still to feed takes a position of all slots, and the
  // longest remaining generation one per step.
  int64_t prompts = static_cast<int64_t>(r.prompt.size()), steps = r.config.max_new_tokens;
  for (const Active& a : active) {
    prompts += static_cast<int64_t>(a.req->prompt.size()) - a.fed;
    steps = std::max(steps, a.req->config.max_new_tokens - a.generated);
  }
  return prompts + steps <= left;
}

void Scheduler::step(std::vector<Active>& active) {
  const Clock::time_point now = Clock::now();
  auto finish = [&](Active& a, const std::string& reason, const std::string& message = "") {
    a.done = true;
    if (reason == "cancelled") ++metrics_->cancelled;
    if (reason == "deadline") ++metrics_->deadline_exceeded;
    metrics_->request_latency.observe(seconds_between(a.arrived, Clock::now()));
    if (a.req->on_finish)
      a.req->on_finish({reason, message, static_cast<int64_t>(a.req->prompt.size()), a.generated});
  };
  // A request cancelled or past its deadline leaves before it costs a step.
  for (Active& a : active) {
    if (a.req->cancelled)
      finish(a, "cancelled");
    else if (now > a.req->deadline)
      finish(a, "deadline");
  }
  // This step's share of each request: the next chunk of its prompt (all prefilling requests
  // together take at most prefill_chunk tokens, so decoding streams keep their pace), or its
  // last token.
  std::vector<SlotTokens> seqs;
  std::vector<size_t> of_seq;
  std::vector<char> completes;  // the sequence's last token is the prompt's last or a new one
  int64_t budget = config_.prefill_chunk;
  for (size_t i = 0; i < active.size(); ++i) {
    Active& a = active[i];
    if (a.done) continue;
    const int64_t len = static_cast<int64_t>(a.req->prompt.size());
    if (a.fed < len) {
      if (budget <= 0) continue;
      int64_t n = std::min(len - a.fed, budget);
      budget -= n;
      seqs.push_back({a.slot, a.req->prompt.data() + a.fed, n});
      a.fed += n;
      completes.push_back(a.fed == len);
    } else {
      seqs.push_back({a.slot, &a.next, 1});
      completes.push_back(1);
    }
    of_seq.push_back(i);
  }
  if (seqs.empty()) return;
  std::vector<float> logits;
  try {
    decoder_.run(seqs, &logits, nullptr);
  } catch (const Error& e) {
    for (size_t s = 0; s < seqs.size(); ++s) finish(active[of_seq[s]], "error", e.what());
    return;
  }
  const Clock::time_point after = Clock::now();
  int64_t new_tokens = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    Active& a = active[of_seq[s]];
    if (!completes[s]) continue;
    if (a.generated == 0) metrics_->prompt_tokens += static_cast<int64_t>(a.req->prompt.size());
    const float* row = logits.data() + static_cast<int64_t>(s) * vocab_;
    std::vector<float> l(row, row + vocab_);
    int64_t token = generate::pick_token(l, a.seen, a.req->config, a.rng);
    TokenEvent ev;
    ev.token = token;
    if (a.req->logprobs >= 0) fill_logprobs(row, vocab_, token, a.req->logprobs, ev);
    if (a.generated == 0)
      metrics_->time_to_first_token.observe(seconds_between(a.arrived, after));
    else
      metrics_->inter_token_latency.observe(seconds_between(a.last_token, after));
    a.last_token = after;
    ++a.generated;
    ++new_tokens;
    a.seen.push_back(token);
    a.next = token;
    bool go_on = !a.req->on_token || a.req->on_token(ev);
    const int64_t used = static_cast<int64_t>(a.req->prompt.size()) + a.generated;
    if (a.req->cancelled)
      finish(a, "cancelled");
    else if (!go_on || token == a.req->config.eos_token_id)
      finish(a, "stop");
    else if (a.generated >= a.req->config.max_new_tokens || used >= positions_)
      finish(a, "length");
  }
  metrics_->tokens_generated(new_tokens);
}

}  // namespace gptrt::serve

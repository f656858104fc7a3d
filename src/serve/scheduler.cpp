#include "serve/scheduler.h"

#include <algorithm>
#include <cmath>
#include <iterator>
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

// Whether a request's next token needs the logits (else the decoder's argmax is its pick).
bool needs_logits(const Request& r) {
  return r.config.do_sample || r.config.repetition_penalty != 1.0f || r.logprobs >= 0;
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
  deliverer_ = std::thread([this] { deliver_loop(); });
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    draining_ = true;
    stopped_ = true;
  }
  cv_.notify_all();
  drain();
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
  {  // every token and finish handed over, then the delivery thread stops
    std::lock_guard<std::mutex> lock(out_mu_);
    out_closed_ = true;
  }
  out_cv_.notify_all();
  if (deliverer_.joinable()) deliverer_.join();
}

void Scheduler::post(std::vector<Delivery>& batch) {
  if (batch.empty()) return;
  {
    std::lock_guard<std::mutex> lock(out_mu_);
    if (out_.empty())
      out_.swap(batch);
    else
      std::move(batch.begin(), batch.end(), std::back_inserter(out_));
  }
  batch.clear();
  out_cv_.notify_one();
}

void Scheduler::deliver_loop() {
  std::vector<Delivery> work;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(out_mu_);
      out_cv_.wait(lock, [&] { return out_closed_ || !out_.empty(); });
      if (out_.empty()) return;  // closed, and everything delivered
      work.swap(out_);
    }
    for (Delivery& d : work) {
      Request& r = *d.req;
      try {
        if (d.finish) {
          if (r.on_finish) r.on_finish(d.end);
        } else if (!r.stop_requested && r.on_token && !r.on_token(d.token)) {
          r.stop_requested = true;  // (tokens already made after this one are dropped)
        }
      } catch (...) {  // a callback's failure ends its request, not the server
        r.cancelled = true;
      }
    }
    work.clear();
  }
}

void Scheduler::warm_up() {
  // Every slot at once, their prompts together one prefill chunk, then a decode step over all
  // of them: the largest passes the server runs (buffers, packed weights, CUDA graphs made now).
  const int64_t n = std::max<int64_t>(1, config_.slots);
  const int64_t len = std::clamp<int64_t>(config_.prefill_chunk / n, 1, positions_ - 2);
  std::mutex mu;
  std::condition_variable cv;
  int64_t left = 0;
  for (int64_t i = 0; i < n; ++i) {
    auto r = std::make_shared<Request>();
    r->prompt.assign(static_cast<size_t>(len), 0);
    r->config.max_new_tokens = 2;
    r->counted = false;
    r->on_finish = [&](const Finish&) {
      std::lock_guard<std::mutex> lock(mu);
      --left;
      cv.notify_all();
    };
    {
      std::lock_guard<std::mutex> lock(mu);
      ++left;
    }
    if (!submit(r)) {
      std::lock_guard<std::mutex> lock(mu);
      --left;
    }
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return left == 0; });
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
      // Join newly arrived requests to the running batch while slots are free (in waves while
      // every running sequence decodes: join_wait_steps).
      const int64_t free_slots = config_.slots - static_cast<int64_t>(active.size());
      const int64_t fit = std::min(static_cast<int64_t>(queue_.size()), free_slots);
      bool join = fit > 0;
      if (join && config_.join_wait_steps > 0) {
        const bool prefilling = std::any_of(active.begin(), active.end(), [](const Active& a) {
          return a.fed < static_cast<int64_t>(a.req->prompt.size());
        });
        join = active.empty() || prefilling || fit >= std::max<int64_t>(1, config_.slots / 8) ||
               join_waited_ >= config_.join_wait_steps;
        join_waited_ = join ? 0 : join_waited_ + 1;
      }
      while (join && !queue_.empty() && static_cast<int64_t>(active.size()) < config_.slots) {
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
    post(pending_);
  }
}

void Scheduler::step(std::vector<Active>& active) {
  const Clock::time_point now = Clock::now();
  auto finish = [&](Active& a, const std::string& reason, const std::string& message = "") {
    a.done = true;
    if (a.req->counted) {
      if (reason == "cancelled") ++metrics_->cancelled;
      if (reason == "deadline") ++metrics_->deadline_exceeded;
      metrics_->request_latency.observe(seconds_between(a.arrived, Clock::now()));
    }
    Delivery d;
    d.req = a.req;
    d.finish = true;
    d.end = {reason, message, static_cast<int64_t>(a.req->prompt.size()), a.generated};
    pending_.push_back(std::move(d));
  };
  // A request cancelled, stopped by its client's callback or past its deadline leaves before it
  // costs a step.
  for (Active& a : active) {
    if (a.req->cancelled)
      finish(a, "cancelled");
    else if (a.req->stop_requested)
      finish(a, "stop");
    else if (now > a.req->deadline)
      finish(a, "deadline");
  }
  // This step's share of each request: the next chunk of its prompt (all prefilling requests
  // together take at most prefill_chunk tokens, so decoding streams keep their pace, and no more
  // than the positions the slots share where they do), or its last token.
  std::vector<SlotTokens> seqs;
  std::vector<size_t> of_seq;
  std::vector<char> completes;  // the sequence's last token is the prompt's last or a new one
  int64_t budget = config_.prefill_chunk;
  const int64_t shared = decoder_.shared_positions_left();
  if (shared >= 0) budget = std::min(budget, std::max<int64_t>(shared, 1));
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
  // Greedy requests take the decoder's argmax (on the GPU: 8 bytes a row instead of the
  // logits); the logits come back only for a request that samples, penalises or asks for them.
  bool need_logits = false;
  for (size_t s = 0; s < seqs.size(); ++s)
    need_logits |= completes[s] && needs_logits(*active[of_seq[s]].req);
  bool prompt_tokens = false, counted_pass = false;
  for (size_t s = 0; s < seqs.size(); ++s) {
    prompt_tokens |= seqs[s].tokens != &active[of_seq[s]].next;
    counted_pass |= active[of_seq[s]].req->counted;
  }
  // Several greedy steps in one pass (the CUDA decoder: up to 8 in one CUDA graph, so the host's
  // work per step, launching and waiting, is paid once) while every sequence decodes greedily and
  // no request waits for a free slot; no request is taken past its tokens or positions. Tokens
  // then reach the clients in bursts of `steps`; joins, cancellations and deadlines wait for the
  // pass's end.
  int64_t steps = 1;
  if (!need_logits && !prompt_tokens && config_.max_decode_steps > 1) {
    bool waiting = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      waiting = !queue_.empty() && static_cast<int64_t>(active.size()) < config_.slots;
    }
    if (!waiting) {
      steps = std::min(config_.max_decode_steps, decoder_.max_greedy_steps(seqs));
      for (size_t s = 0; s < seqs.size(); ++s) {
        const Request& r = *active[of_seq[s]].req;
        const int64_t made = active[of_seq[s]].generated;
        steps = std::min({steps, r.config.max_new_tokens - made,
                          positions_ - static_cast<int64_t>(r.prompt.size()) - made});
      }
      steps = std::max<int64_t>(steps, 1);
    }
  }
  const Clock::time_point before = Clock::now();
  try {
    if (steps > 1)
      decoder_.greedy_steps(seqs, steps, picks_);
    else
      decoder_.run(seqs, need_logits ? &logits_ : nullptr, &picks_);
  } catch (const Error& e) {
    for (size_t s = 0; s < seqs.size(); ++s) finish(active[of_seq[s]], "error", e.what());
    return;
  }
  const Clock::time_point after = Clock::now();
  if (counted_pass) {  // (warm-up passes stay out; a pass of several steps counts each)
    for (int64_t k = 0; k < steps; ++k)
      (prompt_tokens ? metrics_->prefill_step : metrics_->decode_step)
          .observe(seconds_between(before, after) / static_cast<double>(steps));
    metrics_->step_sequences += static_cast<int64_t>(seqs.size()) * steps;
  }
  int64_t new_tokens = 0;
  for (int64_t k = 0; k < steps; ++k)
    for (size_t s = 0; s < seqs.size(); ++s) {
      Active& a = active[of_seq[s]];
      if (!completes[s] || a.done) continue;  // (a request done mid-pass drops its later picks)
      const bool counted = a.req->counted;
      if (a.generated == 0 && counted)
        metrics_->prompt_tokens += static_cast<int64_t>(a.req->prompt.size());
      const GenerationConfig& g = a.req->config;
      int64_t token = picks_[static_cast<size_t>(k) * seqs.size() + s];
      TokenEvent ev;
      if (needs_logits(*a.req)) {  // (steps == 1 then)
        const float* row = logits_.data() + static_cast<int64_t>(s) * vocab_;
        std::vector<float> l(row, row + vocab_);
        token = generate::pick_token(l, a.seen, g, a.rng);
        if (a.req->logprobs >= 0) fill_logprobs(row, vocab_, token, a.req->logprobs, ev);
      }
      ev.token = token;
      if (counted)
        (a.generated == 0 ? metrics_->time_to_first_token : metrics_->inter_token_latency)
            .observe(seconds_between(a.generated == 0 ? a.arrived : a.last_token, after));
      a.last_token = after;
      ++a.generated;
      new_tokens += counted;
      a.seen.push_back(token);
      a.next = token;
      Delivery d;
      d.req = a.req;
      d.token = std::move(ev);
      pending_.push_back(std::move(d));
      const int64_t used = static_cast<int64_t>(a.req->prompt.size()) + a.generated;
      if (a.req->cancelled)
        finish(a, "cancelled");
      else if (token == a.req->config.eos_token_id)
        finish(a, "stop");
      else if (a.generated >= a.req->config.max_new_tokens || used >= positions_)
        finish(a, "length");
    }
  metrics_->tokens_generated(new_tokens);
}

}  // namespace gptrt::serve

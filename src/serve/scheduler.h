// Continuous batching on a gptrt::Decoder: one thread runs the decoder step after step; between
// steps it joins newly arrived requests to the running batch (their prompts prefilled in chunks,
// so that running streams keep their inter-token latency), retires finished ones at once and
// keeps decoding the rest. Each request has its own sampling parameters, seed, deadline and a
// cancel flag; greedy results do not depend on what else is in the batch. A second thread hands
// the tokens to the requests' callbacks, so that the next step runs while they do.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gptrt/decoder.h"
#include "gptrt/generate.h"
#include "serve/metrics.h"

namespace gptrt::serve {

/// A generated token with what a client may ask of it.
struct TokenEvent {
  int64_t token = 0;
  double logprob = 0;                           // log-softmax of the model's logits
  std::vector<std::pair<int64_t, double>> top;  // the most likely tokens (logprobs >= 1)
};

/// Why a request ended: "length" (max tokens or the model's positions), "stop" (end of text or a
/// stop the client's callback found), "cancelled", "deadline", "shutdown" or "error".
struct Finish {
  std::string reason;
  std::string message;  // for "error"
  int64_t prompt_tokens = 0, generated_tokens = 0;
};

struct Request {
  std::vector<int64_t> prompt;
  GenerationConfig config;  // max_new_tokens, sampling, seed, eos_token_id
  int64_t logprobs = -1;    // alternatives per token to report (0: the chosen token's only;
                            // -1: no logprobs, none computed)
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  std::atomic<bool> cancelled{false};
  /// Called on the scheduler's delivery thread for each new token, in order; false stops the
  /// request ("stop": no later token reaches it).
  std::function<bool(const TokenEvent&)> on_token;
  /// Called once, on the delivery thread after the request's last on_token (never for a
  /// request submit refused).
  std::function<void(const Finish&)> on_finish;
  /// Set when on_token returned false (the scheduler retires the request at its next step).
  std::atomic<bool> stop_requested{false};
  bool counted = true;  // false: kept out of the metrics (the server's warm-up)
};

struct SchedulerConfig {
  int64_t slots = 8;           // sequences decoded together
  int64_t max_queue = 64;      // requests waiting for a slot before submit refuses
  int64_t prefill_chunk = 64;  // prompt tokens one step takes from all prefilling requests
  int64_t max_positions = 0;   // tokens per slot (0: the model's n_positions)
  // While every running sequence is decoding, new requests join in waves: when slots / 8 of
  // them (at least 1) are waiting for free slots, or after this many decode steps (0: each
  // joins at the next step). A decoder that pads a pass to its
  // longest sequence (cuda) runs every row for a prompt's tokens: joining one by one, nearly
  // every step of a full server is such a pass.
  int64_t join_wait_steps = 0;
  // Greedy decode steps one pass may run while every sequence decodes greedily and nothing waits
  // to join (the CUDA decoder runs up to 8 in one CUDA graph; the CPU's one at a time): 1 runs
  // one step per pass. (On the H100 8 gained no tokens/s at 64 streams and sent tokens in bursts:
  // docs/lab/2026-12-07-serve-gpu-64-streams.md.)
  int64_t max_decode_steps = 1;
  int threads = 0;  // CPU threads (0: every core)
};

class Scheduler {
 public:
  Scheduler(std::shared_ptr<const Engine> engine, const SchedulerConfig& config,
            std::shared_ptr<Metrics> metrics);
  ~Scheduler();

  /// Queues a request; false when the queue is full or the scheduler is draining (the request
  /// is not run and on_finish is not called). Throws gptrt::Error for a request that cannot run
  /// (empty prompt, ids outside the vocabulary, prompt + max tokens beyond the positions).
  bool submit(std::shared_ptr<Request> request);
  /// Stops taking requests, finishes those queued and running, and stops the thread.
  void drain();
  /// Runs the largest passes the server will (a prompt chunk over every slot, then a decode
  /// step over all of them) and returns when they are done: first requests then pay for none
  /// of the buffers, packed weights or CUDA graphs they need.
  void warm_up();
  SchedulerGauges stats() const;
  int64_t vocab_size() const { return vocab_; }
  int64_t n_positions() const { return positions_; }

 private:
  struct Active;
  // A token or a finish for the delivery thread.
  struct Delivery {
    std::shared_ptr<Request> req;
    bool finish = false;
    TokenEvent token;
    Finish end;
  };
  void loop();
  void step(std::vector<Active>& active);
  void deliver_loop();
  void post(std::vector<Delivery>& batch);

  Decoder decoder_;
  SchedulerConfig config_;
  std::shared_ptr<Metrics> metrics_;
  int64_t vocab_ = 0, positions_ = 0;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Request>> queue_;
  std::atomic<int64_t> running_{0};
  bool draining_ = false, stopped_ = false;
  int64_t join_waited_ = 0;        // decode steps run since a request found a free slot and waited
  std::vector<Delivery> pending_;  // step() fills it, post() hands it over
  std::vector<float> logits_;      // the last step's, when a request needed them (kept: no
  std::vector<int64_t> picks_;     // allocation per step)
  std::mutex out_mu_;
  std::condition_variable out_cv_;
  std::vector<Delivery> out_;  // for the delivery thread
  bool out_closed_ = false;
  std::thread thread_, deliverer_;
};

}  // namespace gptrt::serve

// `gptrt serve`: an HTTP/1.1 server (cpp-httplib: keep-alive, a thread pool, chunked responses)
// in front of the continuous-batching scheduler. OpenAI's completions API (streaming as
// server-sent events), KServe's v2 / Open Inference Protocol REST API (JSON and the binary data
// extension), health, readiness, Prometheus metrics and token-id endpoints.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "gptrt/engine.h"
#include "serve/scheduler.h"

namespace gptrt::tokenizer {
class Tokenizer;
}

namespace gptrt::serve {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8080;                   // 0: any free port (port() tells which)
  std::string api_key;               // empty: no authentication
  std::string model_name = "gptrt";  // what /v1/models lists and requests must name
  int64_t max_body_bytes = 8 << 20;  // larger requests get 413
  double request_timeout_s = 600;    // a request's deadline
  int64_t max_n = 16;                // choices per prompt
  int http_threads = 0;              // 0: enough for every slot and queued request
};

class Server {
 public:
  /// `tokenizer` may be null: prompts must then be token ids and texts are empty.
  Server(std::shared_ptr<const Engine> engine,
         std::shared_ptr<const tokenizer::Tokenizer> tokenizer, const ServerConfig& config,
         const SchedulerConfig& scheduler);
  ~Server();
  /// Binds; throws gptrt::Error if the address cannot be had. Then port() is known.
  void bind();
  int port() const;
  /// Serves until stop() (or SIGTERM/SIGINT with install_signal_handlers): then stops taking
  /// connections and requests, finishes those in flight, and returns.
  void serve();
  void stop();
  /// SIGTERM and SIGINT call stop() on the one server serving.
  void install_signal_handlers();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace gptrt::serve

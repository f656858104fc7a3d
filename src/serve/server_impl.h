// What the server's route files share (internal to src/serve/): the server's state and the
// helpers every route answers with.
#pragma once

#include <httplib.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "gptrt/engine.h"
#include "serve/metrics.h"
#include "serve/scheduler.h"
#include "serve/server.h"
#include "tokenizer/tokenizer.h"

namespace gptrt::serve {

using json = nlohmann::json;

struct Server::Impl {
  std::shared_ptr<const Engine> engine;
  std::shared_ptr<const tokenizer::Tokenizer> tokenizer;
  ServerConfig config;
  std::shared_ptr<Metrics> metrics = std::make_shared<Metrics>();
  std::unique_ptr<Scheduler> scheduler;
  httplib::Server http;
  std::atomic<bool> ready{false}, stopping{false};
  std::atomic<int64_t> next_id{1};
  // KServe's infer runs forward passes on one execution context at a time.
  std::mutex forward_mu;
  std::unique_ptr<ExecutionContext> forward;
  int bound_port = -1;
};

/// An OpenAI-style error object with `status`: {"error": {"message", "type", "param", "code"}}.
void send_error(httplib::Response& res, int status, const std::string& message,
                const std::string& param = "", const std::string& type = "");
/// The body as JSON, or a 400 sent and nullopt.
bool parse_body(const httplib::Request& req, httplib::Response& res, json& out);

/// Routes of each API, registered on the server.
void add_completion_routes(Server::Impl& s);
void add_kserve_routes(Server::Impl& s);

}  // namespace gptrt::serve

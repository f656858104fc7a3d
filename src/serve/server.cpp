#include "serve/server.h"

#include <csignal>
#include <thread>

#include "gptrt/error.h"
#include "serve/server_impl.h"

namespace gptrt::serve {
namespace {

// Set by SIGTERM/SIGINT (all a signal handler may do); the serving thread's watcher acts on it.
std::atomic<bool> g_signalled{false};

void on_signal(int) {
  g_signalled = true;
}

std::string status_type(int status) {
  switch (status) {
    case 401:
      return "authentication_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 503:
      return "server_unavailable";
    default:
      return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

}  // namespace

void send_error(httplib::Response& res, int status, const std::string& message,
                const std::string& param, const std::string& type) {
  json e = {{"message", message},
            {"type", type.empty() ? status_type(status) : type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", status}};
  res.status = status;
  res.set_content(json{{"error", e}}.dump(), "application/json");
}

bool parse_body(const httplib::Request& req, httplib::Response& res, json& out) {
  try {
    out = json::parse(req.body);
  } catch (const json::exception& e) {
    send_error(res, 400, std::string("the request body is not valid JSON: ") + e.what());
    return false;
  }
  if (!out.is_object()) {
    send_error(res, 400, "the request body must be a JSON object");
    return false;
  }
  return true;
}

Server::Server(std::shared_ptr<const Engine> engine,
               std::shared_ptr<const tokenizer::Tokenizer> tokenizer, const ServerConfig& config,
               const SchedulerConfig& scheduler)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.engine = std::move(engine);
  s.tokenizer = std::move(tokenizer);
  s.config = config;
  s.scheduler = std::make_unique<Scheduler>(s.engine, scheduler, s.metrics);
  s.forward = s.engine->create_execution_context(scheduler.threads);
  if (s.tokenizer && s.tokenizer->vocab_size() > s.scheduler->vocab_size())
    throw Error(ErrorCode::kInvalidArgument,
                "the tokenizer has " + std::to_string(s.tokenizer->vocab_size()) +
                    " tokens, the model " + std::to_string(s.scheduler->vocab_size()) +
                    "; give the model's own tokenizer (--tokenizer)");
  int threads = config.http_threads > 0
                    ? config.http_threads
                    : static_cast<int>(scheduler.slots + scheduler.max_queue + 4);
  s.http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.http.set_payload_max_length(static_cast<size_t>(config.max_body_bytes));
  s.http.set_keep_alive_max_count(1000);
  s.http.set_read_timeout(30, 0);

  // Every request: the API key, when one is set (health and metrics stay open to probes).
  s.http.set_pre_routing_handler([&s](const httplib::Request& req, httplib::Response& res) {
    const bool open =
        req.path == "/health" || req.path == "/metrics" || req.path.rfind("/v2/health", 0) == 0;
    if (!s.config.api_key.empty() && !open) {
      std::string auth = req.get_header_value("Authorization");
      if (auth != "Bearer " + s.config.api_key) {
        send_error(res, 401,
                   auth.empty() ? "no API key: send the header Authorization: Bearer <key>"
                                : "the API key is not valid");
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    if (s.stopping && req.path != "/health" && req.path != "/metrics") {
      send_error(res, 503, "the server is shutting down");
      res.set_header("Connection", "close");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  s.http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // a route answered already
    if (res.status == 413)
      send_error(res, 413, "the request body is larger than the server accepts");
    else if (res.status == 404)
      send_error(res, 404, "no route " + req.method + " " + req.path);
    else if (res.status == 405)
      send_error(res, 405, "method " + req.method + " is not allowed on " + req.path);
    else
      send_error(res, res.status, "the request could not be served");
  });
  s.http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        try {
          std::rethrow_exception(ep);
        } catch (const Error& e) {
          send_error(res, e.code() == ErrorCode::kInternal ? 500 : 400, e.what());
        } catch (const std::exception& e) {
          send_error(res, 500, std::string("internal error: ") + e.what());
        } catch (...) {
          send_error(res, 500, "internal error");
        }
      });

  s.http.Get("/health", [&s](const httplib::Request&, httplib::Response& res) {
    res.set_content(json{{"status", s.ready ? "ok" : "loading"}}.dump(), "application/json");
    if (!s.ready) res.status = 503;
  });
  s.http.Get("/metrics", [&s](const httplib::Request&, httplib::Response& res) {
    res.set_content(s.metrics->prometheus(s.scheduler->stats()),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
  s.http.Get("/v1/models", [&s](const httplib::Request&, httplib::Response& res) {
    json model = {{"id", s.config.model_name},
                  {"object", "model"},
                  {"created", 0},
                  {"owned_by", "gptrt"},
                  {"max_model_len", s.scheduler->n_positions()}};
    res.set_content(json{{"object", "list"}, {"data", json::array({model})}}.dump(),
                    "application/json");
  });
  s.http.Post("/v1/chat/completions", [](const httplib::Request&, httplib::Response& res) {
    send_error(res, 400,
               "this model has no chat template (GPT-2 is a plain language model); use "
               "POST /v1/completions with a prompt");
  });
  s.http.Post("/tokenize", [&s](const httplib::Request& req, httplib::Response& res) {
    json body;
    if (!parse_body(req, res, body)) return;
    if (!s.tokenizer) return send_error(res, 400, "the server has no tokenizer (--tokenizer)");
    if (!body.contains("content") || !body["content"].is_string())
      return send_error(res, 400, "'content' must be a string", "content");
    res.set_content(
        json{{"tokens", s.tokenizer->encode(body["content"].get<std::string>())}}.dump(),
        "application/json");
  });
  s.http.Post("/detokenize", [&s](const httplib::Request& req, httplib::Response& res) {
    json body;
    if (!parse_body(req, res, body)) return;
    if (!s.tokenizer) return send_error(res, 400, "the server has no tokenizer (--tokenizer)");
    const json& t = body.contains("tokens") ? body["tokens"] : json();
    std::vector<int64_t> ids;
    bool ok = t.is_array();
    for (const json& v : t)
      if (ok && v.is_number_integer() && v.get<int64_t>() >= 0 &&
          v.get<int64_t>() < s.tokenizer->vocab_size())
        ids.push_back(v.get<int64_t>());
      else
        ok = false;
    if (!ok)
      return send_error(res, 400,
                        "'tokens' must be an array of token ids in [0, " +
                            std::to_string(s.tokenizer->vocab_size()) + ")",
                        "tokens");
    res.set_content(json{{"content", s.tokenizer->decode(ids)}}.dump(), "application/json");
  });
  add_completion_routes(s);
  add_kserve_routes(s);
}

Server::~Server() = default;

void Server::bind() {
  Impl& s = *impl_;
  if (s.config.port == 0) {
    s.bound_port = s.http.bind_to_any_port(s.config.host);
  } else if (s.http.bind_to_port(s.config.host, s.config.port)) {
    s.bound_port = s.config.port;
  }
  if (s.bound_port <= 0)
    throw Error(ErrorCode::kIoError, "cannot listen on " + s.config.host + ":" +
                                         std::to_string(s.config.port) +
                                         " (in use, or not an address of this machine); pick "
                                         "another with --host/--port");
}

int Server::port() const {
  return impl_->bound_port;
}

void Server::serve() {
  Impl& s = *impl_;
  s.scheduler->warm_up();  // before readiness, so that the first requests do not pay for it
  s.ready = true;
  std::atomic<bool> served{false};
  std::thread watcher([this, &s, &served] {
    while (!served && !s.stopping) {
      if (g_signalled) stop();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  s.http.listen_after_bind();
  served = true;
  watcher.join();
  // Stopped: the requests in flight finish (their handlers still write), then the scheduler.
  s.scheduler->drain();
}

void Server::stop() {
  Impl& s = *impl_;
  if (s.stopping.exchange(true)) return;
  s.ready = false;
  // Let in-flight handlers finish (the scheduler drains first), then stop listening.
  std::thread([&s] {
    s.scheduler->drain();
    s.http.stop();
  }).detach();
}

void Server::install_signal_handlers() {
  g_signalled = false;
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
#ifdef SIGPIPE  // (Windows has none: a closed socket's send fails instead)
  std::signal(SIGPIPE, SIG_IGN);
#endif
}

}  // namespace gptrt::serve

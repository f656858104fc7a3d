// POST /v1/completions: OpenAI's completions API on the scheduler. A prompt is a string, a list
// of strings, token ids or lists of them; each prompt gets `n` choices, each its own request
// (own slot, own seed). Non-streaming answers once every choice is done; `stream` sends
// server-sent events (text deltas, then a chunk with the finish reason, optionally the usage,
// then `data: [DONE]`). A client that goes away mid-stream cancels its requests.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <random>

#include "gptrt/error.h"
#include "serve/server_impl.h"

namespace gptrt::serve {
namespace {

using Clock = std::chrono::steady_clock;

// What a request body asks for, checked.
struct Ask {
  std::vector<std::vector<int64_t>> prompts;
  std::vector<std::string> prompt_texts;  // for echo ("" where ids came without a tokenizer)
  GenerationConfig gen;
  bool seeded = false;
  int64_t n = 1, logprobs = -1;  // -1: none
  bool echo = false, stream = false, include_usage = false;
  std::vector<std::string> stop;
};

struct BadRequest {
  std::string message, param;
  int status = 400;
};

double number(const json& body, const char* key, double fallback, double lo, double hi) {
  if (!body.contains(key) || body[key].is_null()) return fallback;
  const json& v = body[key];
  if (!v.is_number())
    throw BadRequest{std::string("'") + key + "' must be a number, found " + v.dump(), key};
  double d = v.get<double>();
  if (!(d >= lo && d <= hi))
    throw BadRequest{std::string("'") + key + "' must be in [" + json(lo).dump() + ", " +
                         json(hi).dump() + "], found " + v.dump(),
                     key};
  return d;
}

int64_t integer(const json& body, const char* key, int64_t fallback, int64_t lo, int64_t hi) {
  if (!body.contains(key) || body[key].is_null()) return fallback;
  const json& v = body[key];
  if (!v.is_number_integer())
    throw BadRequest{std::string("'") + key + "' must be an integer, found " + v.dump(), key};
  int64_t i = v.get<int64_t>();
  if (i < lo || i > hi)
    throw BadRequest{std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " +
                         std::to_string(hi) + "], found " + v.dump(),
                     key};
  return i;
}

bool boolean(const json& body, const char* key, bool fallback) {
  if (!body.contains(key) || body[key].is_null()) return fallback;
  if (!body[key].is_boolean())
    throw BadRequest{std::string("'") + key + "' must be true or false, found " + body[key].dump(),
                     key};
  return body[key].get<bool>();
}

std::vector<int64_t> token_list(const json& v, int64_t vocab) {
  std::vector<int64_t> ids;
  for (const json& t : v) {
    if (!t.is_number_integer())
      throw BadRequest{"a token-id prompt must hold integers, found " + t.dump(), "prompt"};
    int64_t id = t.get<int64_t>();
    if (id < 0 || id >= vocab)
      throw BadRequest{"token id " + std::to_string(id) +
                           " is outside the model's vocabulary [0, " + std::to_string(vocab) + ")",
                       "prompt"};
    ids.push_back(id);
  }
  if (ids.empty()) throw BadRequest{"a prompt is empty", "prompt"};
  return ids;
}

Ask parse(const Server::Impl& s, const json& body) {
  Ask a;
  if (body.contains("model") && !body["model"].is_null()) {
    if (!body["model"].is_string()) throw BadRequest{"'model' must be a string", "model"};
    if (body["model"].get<std::string>() != s.config.model_name)
      throw BadRequest{"model '" + body["model"].get<std::string>() +
                           "' does not exist; this server serves '" + s.config.model_name + "'",
                       "model", 404};
  }
  for (const char* unsupported : {"suffix", "logit_bias"})
    if (body.contains(unsupported) && !body[unsupported].is_null() &&
        !(body[unsupported].is_object() && body[unsupported].empty()))
      throw BadRequest{std::string("'") + unsupported + "' is not supported by this server",
                       unsupported};
  for (const char* penalty : {"presence_penalty", "frequency_penalty"})
    if (number(body, penalty, 0, -2, 2) != 0)
      throw BadRequest{std::string("'") + penalty +
                           "' is not supported (use the 'repetition_penalty' extension)",
                       penalty};
  const int64_t vocab = s.scheduler->vocab_size();
  if (!body.contains("prompt")) throw BadRequest{"'prompt' is required", "prompt"};
  const json& p = body["prompt"];
  auto text_prompt = [&](const std::string& text) {
    if (!s.tokenizer)
      throw BadRequest{
          "the server has no tokenizer: send the prompt as token ids (--tokenizer "
          "gives it one)",
          "prompt"};
    std::vector<int64_t> ids = s.tokenizer->encode(text);
    if (ids.empty()) throw BadRequest{"a prompt is empty", "prompt"};
    a.prompts.push_back(ids);
    a.prompt_texts.push_back(text);
  };
  if (p.is_string()) {
    text_prompt(p.get<std::string>());
  } else if (p.is_array() && !p.empty() && p[0].is_number_integer()) {
    a.prompts.push_back(token_list(p, vocab));
    a.prompt_texts.push_back(s.tokenizer ? s.tokenizer->decode(a.prompts.back()) : "");
  } else if (p.is_array() && !p.empty()) {
    for (const json& item : p) {
      if (item.is_string()) {
        text_prompt(item.get<std::string>());
      } else if (item.is_array()) {
        a.prompts.push_back(token_list(item, vocab));
        a.prompt_texts.push_back(s.tokenizer ? s.tokenizer->decode(a.prompts.back()) : "");
      } else {
        throw BadRequest{
            "'prompt' must be a string, a list of strings, token ids or lists of "
            "token ids; found an item " +
                item.dump(),
            "prompt"};
      }
    }
  } else {
    throw BadRequest{
        "'prompt' must be a string, a list of strings, token ids or lists of token "
        "ids",
        "prompt"};
  }
  a.gen.max_new_tokens = integer(body, "max_tokens", 16, 1, s.scheduler->n_positions());
  for (size_t i = 0; i < a.prompts.size(); ++i) {
    int64_t len = static_cast<int64_t>(a.prompts[i].size());
    if (len + a.gen.max_new_tokens > s.scheduler->n_positions())
      throw BadRequest{"prompt " + std::to_string(i) + " has " + std::to_string(len) +
                           " tokens; with max_tokens " + std::to_string(a.gen.max_new_tokens) +
                           " that is " + std::to_string(len + a.gen.max_new_tokens) +
                           " positions, the model has " +
                           std::to_string(s.scheduler->n_positions()),
                       "max_tokens"};
  }
  double temperature = number(body, "temperature", 1.0, 0, 2);
  a.gen.do_sample = temperature > 0;
  a.gen.temperature = static_cast<float>(temperature > 0 ? temperature : 1.0);
  a.gen.top_p = static_cast<float>(number(body, "top_p", 1.0, 1e-9, 1));
  a.gen.top_k = integer(body, "top_k", 0, 0, vocab);
  a.gen.repetition_penalty = static_cast<float>(number(body, "repetition_penalty", 1.0, 1e-6, 100));
  if (body.contains("seed") && !body["seed"].is_null()) {
    a.gen.seed = static_cast<uint64_t>(integer(body, "seed", 0, INT64_MIN, INT64_MAX));
    a.seeded = true;
  }
  a.n = integer(body, "n", 1, 1, s.config.max_n);
  if (body.contains("best_of") && !body["best_of"].is_null() &&
      integer(body, "best_of", a.n, 1, s.config.max_n) != a.n)
    throw BadRequest{"'best_of' other than n is not supported", "best_of"};
  a.echo = boolean(body, "echo", false);
  a.stream = boolean(body, "stream", false);
  if (body.contains("logprobs") && !body["logprobs"].is_null())
    a.logprobs = integer(body, "logprobs", 0, 0, 20);
  if (a.echo && a.logprobs >= 0)
    throw BadRequest{"'echo' with 'logprobs' (the prompt's logprobs) is not supported", "echo"};
  if (body.contains("stream_options") && body["stream_options"].is_object())
    a.include_usage = boolean(body["stream_options"], "include_usage", false);
  if (body.contains("stop") && !body["stop"].is_null()) {
    const json& st = body["stop"];
    if (st.is_string()) {
      a.stop.push_back(st.get<std::string>());
    } else if (st.is_array() && st.size() <= 4) {
      for (const json& x : st) {
        if (!x.is_string()) throw BadRequest{"'stop' must hold strings", "stop"};
        a.stop.push_back(x.get<std::string>());
      }
    } else {
      throw BadRequest{"'stop' must be a string or a list of up to 4 strings", "stop"};
    }
    a.stop.erase(std::remove(a.stop.begin(), a.stop.end(), std::string()), a.stop.end());
    if (!a.stop.empty() && !s.tokenizer)
      throw BadRequest{"'stop' strings need a tokenizer (--tokenizer)", "stop"};
  }
  if (s.tokenizer) a.gen.eos_token_id = s.tokenizer->special_id("<|endoftext|>");
  if (boolean(body, "ignore_eos", false)) a.gen.eos_token_id = -1;  // (vLLM's, llama.cpp's)
  return a;
}

// One choice in flight: its request and what came of it.
struct Choice {
  size_t index = 0, prompt = 0;
  std::shared_ptr<Request> req;
  std::vector<int64_t> tokens;
  std::vector<TokenEvent> events;
  std::unique_ptr<tokenizer::StreamDecoder> stream;  // text as tokens come (whole characters)
  std::string text;                                  // decoded so far (cut at a stop string)
  bool stopped = false;                              // a stop string ended it
  size_t sent = 0;                                   // bytes of `text` already streamed
  size_t events_sent = 0;                            // tokens whose logprobs were streamed
  size_t tokens_sent = 0;                            // tokens whose ids were streamed
  bool final_sent = false;                           // the chunk with the finish reason went out
  std::string reason;                                // finish reason once done
  std::string error;
  bool done = false;
};

// All choices of one completion, and the events the streaming writer waits for.
struct Completion {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Choice> choices;
  std::deque<size_t> updates;  // choice indices with new text or a finish
  size_t remaining = 0;
};

// Cuts a choice's text before the first stop string in what was added from byte `from` on;
// true when one was found.
bool cut_at_stop(const std::vector<std::string>& stops, Choice& c, size_t from) {
  for (const std::string& stop : stops) {
    size_t at = c.text.find(stop, from >= stop.size() ? from - stop.size() + 1 : 0);
    if (at != std::string::npos) {
      c.text.resize(at);
      c.stopped = true;
    }
  }
  return c.stopped;
}

// How much of a choice's text may be streamed now: not a tail that may still become a stop
// string (and not half a character of it).
size_t streamable(const std::vector<std::string>& stops, const Choice& c) {
  if (c.done) return c.text.size();
  size_t hold = 0;
  for (const std::string& stop : stops) hold = std::max(hold, stop.size() - 1);
  size_t n = c.text.size() > hold ? c.text.size() - hold : 0;
  while (n > 0 && n < c.text.size() && (static_cast<unsigned char>(c.text[n]) & 0xC0) == 0x80) --n;
  return std::max(n, c.sent);
}

json logprobs_json(const tokenizer::Tokenizer* tok, const Choice& c, size_t from) {
  json tokens = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
  size_t offset = 0;
  for (size_t i = 0; i < c.events.size(); ++i) {
    const TokenEvent& e = c.events[i];
    std::string piece = tok ? tok->decode({e.token}) : std::to_string(e.token);
    if (i >= from) {
      tokens.push_back(piece);
      lps.push_back(e.logprob);
      json top = json::object();
      for (const auto& [id, lp] : e.top) top[tok ? tok->decode({id}) : std::to_string(id)] = lp;
      tops.push_back(top);
      offsets.push_back(offset);
    }
    offset += piece.size();
  }
  return {{"tokens", tokens},
          {"token_logprobs", lps},
          {"top_logprobs", tops},
          {"text_offset", offsets}};
}

}  // namespace

void add_completion_routes(Server::Impl& s) {
  s.http.Post("/v1/completions", [&s](const httplib::Request& hreq, httplib::Response& res) {
    json body;
    if (!parse_body(hreq, res, body)) return;
    Ask ask;
    try {
      ask = parse(s, body);
    } catch (const BadRequest& b) {
      ++s.metrics->rejected_invalid;
      return send_error(res, b.status, b.message, b.param);
    } catch (const Error& e) {
      ++s.metrics->rejected_invalid;
      return send_error(res, 400, e.what(), "prompt");
    }
    const std::string id = "cmpl-" + std::to_string(s.next_id++);
    const int64_t created = std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
    auto comp = std::make_shared<Completion>();
    std::random_device entropy;
    const Clock::time_point deadline =
        Clock::now() +
        std::chrono::milliseconds(static_cast<int64_t>(s.config.request_timeout_s * 1e3));
    for (size_t p = 0; p < ask.prompts.size(); ++p)
      for (int64_t j = 0; j < ask.n; ++j) {
        Choice c;
        c.index = comp->choices.size();
        c.prompt = p;
        c.req = std::make_shared<Request>();
        c.req->prompt = ask.prompts[p];
        c.req->config = ask.gen;
        c.req->config.seed = ask.seeded ? ask.gen.seed + static_cast<uint64_t>(j)
                                        : (uint64_t{entropy()} << 32) ^ entropy();
        c.req->logprobs = ask.logprobs;
        c.req->deadline = deadline;
        comp->choices.push_back(std::move(c));
      }
    comp->remaining = comp->choices.size();
    const tokenizer::Tokenizer* tok = s.tokenizer.get();
    const int64_t eos = ask.gen.eos_token_id;
    auto stops = std::make_shared<const std::vector<std::string>>(ask.stop);
    for (Choice& c : comp->choices) {
      const size_t k = c.index;
      if (tok) c.stream = std::make_unique<tokenizer::StreamDecoder>(*tok);
      std::weak_ptr<Completion> weak = comp;
      c.req->on_token = [weak, k, eos, stops](const TokenEvent& ev) {
        auto cp = weak.lock();
        if (!cp) return false;
        std::lock_guard<std::mutex> lock(cp->mu);
        Choice& ch = cp->choices[k];
        ch.tokens.push_back(ev.token);
        ch.events.push_back(ev);
        if (ch.stream && ev.token != eos) {  // the end-of-text token is not part of the text
          size_t from = ch.text.size();
          ch.text += ch.stream->push(ev.token);
          cut_at_stop(*stops, ch, from);
        }
        cp->updates.push_back(k);
        cp->cv.notify_all();
        return !ch.stopped;
      };
      c.req->on_finish = [weak, k, eos, stops](const Finish& f) {
        auto cp = weak.lock();
        if (!cp) return;
        std::lock_guard<std::mutex> lock(cp->mu);
        Choice& ch = cp->choices[k];
        if (!ch.tokens.empty() && ch.tokens.back() == eos && f.reason == "stop") {
          ch.tokens.pop_back();
          ch.events.pop_back();
        }
        if (ch.stream && !ch.stopped) {  // bytes held back for an unfinished character
          size_t from = ch.text.size();
          ch.text += ch.stream->finish();
          cut_at_stop(*stops, ch, from);
        }
        // A stop string that cut the text is the reason, whatever ended the request: the
        // scheduler may run the pass that reaches max_tokens before the delivery of the token
        // that completed the stop string asks it to stop.
        ch.reason = ch.stopped ? "stop" : f.reason;
        ch.error = ch.stopped ? std::string() : f.message;
        ch.done = true;
        --cp->remaining;
        cp->updates.push_back(k);
        cp->cv.notify_all();
      };
    }
    // Submit every choice; a full queue refuses the whole completion.
    for (size_t i = 0; i < comp->choices.size(); ++i) {
      bool accepted = false;
      try {
        accepted = s.scheduler->submit(comp->choices[i].req);
      } catch (const Error& e) {
        for (size_t j = 0; j < i; ++j) comp->choices[j].req->cancelled = true;
        ++s.metrics->rejected_invalid;
        return send_error(res, 400, e.what(), "prompt");
      }
      if (!accepted) {
        for (size_t j = 0; j < i; ++j) comp->choices[j].req->cancelled = true;
        ++s.metrics->rejected_full;
        res.set_header("Retry-After", "1");
        return send_error(
            res, s.stopping ? 503 : 429,
            s.stopping ? "the server is shutting down" : "the server's queue is full; retry later");
      }
    }
    s.metrics->requests += static_cast<int64_t>(comp->choices.size());

    auto usage = [comp]() {
      int64_t prompt = 0, completion = 0;
      for (const Choice& c : comp->choices) {
        prompt += static_cast<int64_t>(c.req->prompt.size());
        completion += static_cast<int64_t>(c.tokens.size());
      }
      return json{{"prompt_tokens", prompt},
                  {"completion_tokens", completion},
                  {"total_tokens", prompt + completion}};
    };
    // "stop" or "length"; "cancelled", "deadline" and "shutdown" are named as they are.
    auto reason_json = [](const Choice& c) -> json { return c.reason; };

    if (!ask.stream) {
      std::unique_lock<std::mutex> lock(comp->mu);
      // A client that goes away while it waits frees its slots (seen within 50 ms).
      while (!comp->cv.wait_for(lock, std::chrono::milliseconds(50),
                                [&] { return comp->remaining == 0; }))
        if (hreq.is_connection_closed()) {
          for (Choice& c : comp->choices) c.req->cancelled = true;
          return;
        }
      json choices = json::array();
      for (const Choice& c : comp->choices) {
        if (c.reason == "error") return send_error(res, 500, "generation failed: " + c.error);
        if (c.reason == "deadline")
          return send_error(res, 504,
                            "the request ran past its deadline of " +
                                json(s.config.request_timeout_s).dump() +
                                " s (gptrt serve --timeout); it was stopped");
        json choice = {{"index", c.index},
                       {"text", (ask.echo ? ask.prompt_texts[c.prompt] : "") + c.text},
                       {"token_ids", c.tokens},
                       {"finish_reason", reason_json(c)},
                       {"logprobs", ask.logprobs >= 0 ? logprobs_json(tok, c, 0) : json(nullptr)}};
        choices.push_back(choice);
      }
      json out = {{"id", id},           {"object", "text_completion"},
                  {"created", created}, {"model", s.config.model_name},
                  {"choices", choices}, {"usage", usage()}};
      res.set_content(out.dump(), "application/json");
      return;
    }

    // Streaming: one event per new piece of text of any choice.
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider("text/event-stream", [comp, ask, id, created, &s, tok, usage,
                                                           reason_json,
                                                           stops](size_t, httplib::DataSink& sink) {
      auto send = [&](const json& j) {
        std::string line = "data: " + j.dump() + "\n\n";
        return sink.write(line.data(), line.size());
      };
      auto cancel_all = [&] {
        for (Choice& c : comp->choices) c.req->cancelled = true;
      };
      if (ask.echo) {
        for (const Choice& c : comp->choices) {
          json chunk = {{"id", id},
                        {"object", "text_completion"},
                        {"created", created},
                        {"model", s.config.model_name},
                        {"choices", json::array({{{"index", c.index},
                                                  {"text", ask.prompt_texts[c.prompt]},
                                                  {"logprobs", nullptr},
                                                  {"finish_reason", nullptr}}})}};
          if (!send(chunk)) {
            cancel_all();
            return false;
          }
        }
      }
      std::unique_lock<std::mutex> lock(comp->mu);
      for (;;) {
        comp->cv.wait_for(lock, std::chrono::milliseconds(100),
                          [&] { return !comp->updates.empty() || comp->remaining == 0; });
        while (!comp->updates.empty()) {
          Choice& c = comp->choices[comp->updates.front()];
          comp->updates.pop_front();
          if (c.final_sent) continue;
          size_t upto = streamable(*stops, c);
          if (upto <= c.sent && c.tokens.size() <= c.tokens_sent && !c.done) continue;
          json choice = {
              {"index", c.index},
              {"text", c.text.substr(c.sent, upto - c.sent)},
              {"token_ids",
               std::vector<int64_t>(c.tokens.begin() + static_cast<std::ptrdiff_t>(c.tokens_sent),
                                    c.tokens.end())},
              {"logprobs", nullptr},
              {"finish_reason", c.done ? reason_json(c) : json(nullptr)}};
          c.tokens_sent = c.tokens.size();
          c.final_sent = c.done;
          if (ask.logprobs >= 0) {
            choice["logprobs"] = logprobs_json(tok, c, c.events_sent);
            c.events_sent = c.events.size();
          }
          c.sent = upto;
          if (c.done && !c.error.empty()) choice["error"] = c.error;
          json chunk = {{"id", id},
                        {"object", "text_completion"},
                        {"created", created},
                        {"model", s.config.model_name},
                        {"choices", json::array({choice})}};
          if (!send(chunk)) {  // the client went away: free the slots
            cancel_all();
            return false;
          }
        }
        if (comp->remaining == 0 && comp->updates.empty()) break;
        if (!sink.is_writable()) {
          cancel_all();
          return false;
        }
      }
      if (ask.include_usage)
        send({{"id", id},
              {"object", "text_completion"},
              {"created", created},
              {"model", s.config.model_name},
              {"choices", json::array()},
              {"usage", usage()}});
      std::string done = "data: [DONE]\n\n";
      sink.write(done.data(), done.size());
      sink.done();
      return true;
    });
  });
}

}  // namespace gptrt::serve

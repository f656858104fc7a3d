// The server's continuous-batching scheduler for Python (gptrt.AsyncEngine sits on it): requests
// with their own sampling, seed and callbacks, joined to the running batch between steps.
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <memory>

#include "bindings.h"
#include "callbacks.h"
#include "gptrt/error.h"
#include "serve/scheduler.h"

namespace gptrt::python {
namespace {

// A submitted request, for cancelling it.
struct Handle {
  std::shared_ptr<serve::Request> req;
};

class PyScheduler {
 public:
  PyScheduler(std::shared_ptr<Engine> engine, int64_t slots, int64_t max_queue,
              int64_t prefill_chunk, int threads) {
    serve::SchedulerConfig c;
    c.slots = slots;
    c.max_queue = max_queue;
    c.prefill_chunk = prefill_chunk;
    c.threads = threads;
    nb::gil_scoped_release release;
    s_ = std::make_unique<serve::Scheduler>(engine, c, std::make_shared<serve::Metrics>());
  }
  ~PyScheduler() { close(); }

  // on_token(token) per new token (False stops it); on_finish(reason, message) once. Both run
  // on the scheduler's delivery thread. None when the queue is full.
  std::shared_ptr<Handle> submit(const std::vector<int64_t>& prompt, const GenerationConfig& c,
                                 nb::object on_token, nb::object on_finish) {
    if (!s_) throw Error(ErrorCode::kInvalidArgument, "the engine was closed");
    auto r = std::make_shared<serve::Request>();
    r->prompt = prompt;
    r->config = c;
    auto tok = std::make_shared<PyCallback>(std::move(on_token));
    auto fin = std::make_shared<PyCallback>(std::move(on_finish));
    r->on_token = [tok](const serve::TokenEvent& e) { return (*tok)(e.token); };
    r->on_finish = [fin](const serve::Finish& f) { (*fin)(f.reason, f.message); };
    bool accepted;
    {
      nb::gil_scoped_release release;
      accepted = s_->submit(r);
    }
    if (!accepted) return nullptr;
    return std::make_shared<Handle>(Handle{r});
  }

  // Finishes what is queued and running, then stops (the callbacks may need the GIL meanwhile).
  void close() {
    if (!s_) return;
    nb::gil_scoped_release release;
    s_->drain();
    s_.reset();
  }

  nb::dict stats() const {
    nb::dict d;
    if (!s_) return d;
    serve::SchedulerGauges g = s_->stats();
    d["running"] = g.running;
    d["waiting"] = g.waiting;
    d["slots"] = g.slots;
    return d;
  }

 private:
  std::unique_ptr<serve::Scheduler> s_;
};

}  // namespace

void bind_scheduler(nb::module_& m) {
  nb::class_<Handle>(m, "RequestHandle", "A request in the scheduler.")
      .def(
          "cancel", [](Handle& h) { h.req->cancelled = true; },
          "Stops it at the next step (its slot is freed; on_finish says 'cancelled').");

  nb::class_<PyScheduler>(m, "Scheduler",
                          "gptrt serve's continuous-batching scheduler (use gptrt.AsyncEngine).")
      .def(nb::init<std::shared_ptr<Engine>, int64_t, int64_t, int64_t, int>(), nb::arg("engine"),
           nb::arg("slots") = 8, nb::arg("max_queue") = 64, nb::arg("prefill_chunk") = 64,
           nb::arg("threads") = 0)
      .def("submit", &PyScheduler::submit, nb::arg("prompt"), nb::arg("config"),
           nb::arg("on_token"), nb::arg("on_finish"),
           "Queues a request; None when the queue is full. Raises gptrt.InputError for ids "
           "outside the vocabulary or a prompt + max_new_tokens beyond the positions.")
      .def("close", &PyScheduler::close)
      .def("stats", &PyScheduler::stats);
}

}  // namespace gptrt::python

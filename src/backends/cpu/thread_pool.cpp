#include "backends/cpu/thread_pool.h"

#include <chrono>
#include <cstdlib>
#include <string>

#include "gptrt/error.h"
#include "platform/platform.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace gptrt::cpu {

namespace {

// Spins (when `spin`) until done() or kSpinMicros have passed; returns done().
template <typename Done>
bool spin_until(bool spin, const Done& done) {
  if (!spin) return done();
  using Clock = std::chrono::steady_clock;
  const auto until = Clock::now() + std::chrono::microseconds(ThreadPool::kSpinMicros);
  for (int i = 0;; ++i) {
    if (done()) return true;
#if defined(__x86_64__) || defined(_M_X64)
    _mm_pause();
#else
    std::this_thread::yield();
#endif
    if ((i & 63) == 63 && Clock::now() > until) return done();
  }
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
  const std::vector<int> cores = platform::allowed_cores();  // (never empty)
  spin_ = static_cast<size_t>(threads) <= cores.size();
  if (const char* v = std::getenv("GPTRT_PIN_THREADS")) {
    if (std::string(v) != "0" && std::string(v) != "1")
      throw Error(ErrorCode::kInvalidArgument,
                  std::string("GPTRT_PIN_THREADS is '") + v +
                      "'; expected 1 (each worker thread pinned to one logical core) or 0 (none "
                      "pinned, the default)");
    pin_ = v[0] == '1';
  }
  for (int i = 1; i < threads; ++i)
    workers_.emplace_back([this, core = cores[static_cast<size_t>(i) % cores.size()]] {
      if (pin_ && platform::pin_thread_to_core(core)) pinned_.fetch_add(1);
      worker_loop();
    });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::run_tasks() {
  for (int64_t i = next_.fetch_add(1); i < job_size_; i = next_.fetch_add(1)) (*job_)(i);
}

// Every worker joins every job exactly once and reports back, so a job's state is never seen
// by a worker of another job. The job's fields are written before its generation is advanced
// (release) and read after it is seen (acquire); the advance happens under mu_, so a worker that
// checks the generation under mu_ before sleeping cannot miss it.
void ThreadPool::worker_loop() {
  uint64_t seen = 0;
  for (;;) {
    auto posted = [&] {
      return stop_.load(std::memory_order_acquire) ||
             generation_.load(std::memory_order_acquire) != seen;
    };
    if (!spin_until(spin_, posted)) {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, posted);
    }
    if (stop_.load(std::memory_order_acquire)) return;
    seen = generation_.load(std::memory_order_acquire);
    run_tasks();
    if (finished_.fetch_add(1, std::memory_order_acq_rel) + 1 == workers_.size()) {
      std::lock_guard<std::mutex> lock(mu_);  // (a caller about to sleep holds it or sees this)
      done_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  if (workers_.empty() || n == 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  job_ = &fn;
  job_size_ = n;
  next_.store(0, std::memory_order_relaxed);
  finished_.store(0, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  run_tasks();
  auto all_done = [&] { return finished_.load(std::memory_order_acquire) == workers_.size(); };
  if (!spin_until(spin_, all_done)) {
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, all_done);
  }
  job_ = nullptr;
}

}  // namespace gptrt::cpu

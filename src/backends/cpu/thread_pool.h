// A fixed pool of worker threads for the CPU backend: parallel_for over task indices, the
// calling thread taking part. One pool per ExecutionContext.
//
// A forward pass makes dozens of parallel_for calls microseconds apart, so waking a sleeping
// thread (a futex round trip, 40-80 µs on the 2-core development VM) cost more than many of the
// jobs themselves. Workers and the caller therefore spin for a while (kSpinMicros) on the job
// counter before they sleep on a condition variable; a job that comes within that time starts
// at once. A pool of more threads than the machine has cores does not spin (a spinning waiter
// would hold the core the thread it waits for needs).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace gptrt::cpu {

class ThreadPool {
 public:
  /// `threads` workers in all, the caller included (1 = run everything on the caller). With
  /// GPTRT_PIN_THREADS=1 each worker is pinned to one logical core of those the calling thread may
  /// run on (worker i to the i-th of them, so `taskset` and cpusets are kept; the calling thread
  /// left where the OS puts it, usually the first), so that the OS does not move them between
  /// cores mid-pass; unset or 0, none is pinned. Another value is refused.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  /// Whether the workers asked to be pinned (GPTRT_PIN_THREADS=1) and each one was.
  bool pinned() const { return pinned_.load() == static_cast<int>(workers_.size()) && pin_; }
  /// Runs fn(i) for every i in [0, n), spread over the pool; returns when all are done.
  void parallel_for(int64_t n, const std::function<void(int64_t)>& fn);

  /// How long a waiting thread spins before it sleeps.
  static constexpr int64_t kSpinMicros = 200;

 private:
  void worker_loop();
  void run_tasks();

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t job_size_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<size_t> finished_{0};      // workers done with the current generation
  std::atomic<uint64_t> generation_{0};  // advanced (under mu_) when a job is posted
  std::atomic<bool> stop_{false};
  bool spin_ = true;            // threads <= the cores the pool may run on
  bool pin_ = false;            // GPTRT_PIN_THREADS=1
  std::atomic<int> pinned_{0};  // workers pinned so far
};

}  // namespace gptrt::cpu

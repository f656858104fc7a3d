// A fixed pool of worker threads for the CPU backend: parallel_for over task indices, the
// calling thread taking part. One pool per ExecutionContext.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace gptrt::cpu {

class ThreadPool {
 public:
  /// `threads` workers in all, the caller included (1 = run everything on the caller).
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  /// Runs fn(i) for every i in [0, n), spread over the pool; returns when all are done.
  void parallel_for(int64_t n, const std::function<void(int64_t)>& fn);

 private:
  void worker_loop();
  void run_tasks();

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t job_size_ = 0;
  std::atomic<int64_t> next_{0};
  size_t finished_ = 0;  // workers done with the current generation
  uint64_t generation_ = 0;
  bool stop_ = false;
};

}  // namespace gptrt::cpu

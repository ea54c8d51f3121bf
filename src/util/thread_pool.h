#pragma once
// A fixed pool of worker threads for data-parallel loops. The calling thread takes part in every
// loop, so a pool of N threads has N-1 workers. Kernels split their outer dimension with
// parallel_for; nested calls run serially on the calling thread.
//
// One decoded token is hundreds of parallel loops a few microseconds apart, so waking a sleeping
// worker through the kernel each time (about 28 µs here) would cost a large share of the token.
// Workers and the caller therefore poll an atomic generation counter for a short while before
// they block on a condition variable.
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace retort {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls body(begin, end) on disjoint chunks covering [0, count); chunks are at least `grain` long.
  void parallel_for(size_t count, size_t grain,
                    const std::function<void(size_t begin, size_t end)>& body);

 private:
  void worker_loop(int index);
  void run_chunks();
  void wake(std::condition_variable& sleepers);  // wake_ (workers) or done_ (the caller)
  bool all_finished(uint64_t generation) const;

  // What a loop's workers read, in one cache line: a cache line moves between this VM's two cores
  // in ~225 ns, so a loop that costs more transfers than it must pays for each (the pool with a
  // mutex, a shared busy count and a condition variable took 2.9 µs an empty loop here).
  struct alignas(64) Job {
    std::atomic<uint64_t> generation{0};
    const std::function<void(size_t, size_t)>* body = nullptr;  // written before generation, read after
    size_t count = 0;
    size_t grain = 1;
  };
  // The last generation a worker finished, one cache line each, polled by the loop's caller.
  struct alignas(64) WorkerProgress {
    std::atomic<uint64_t> finished{0};
  };

  std::vector<std::thread> workers_;
  // One loop at a time: the job's fields are shared, and `retort serve` with several models has
  // one engine thread per model calling parallel_for at once. The others wait their turn.
  std::mutex dispatch_mutex_;
  Job job_;
  alignas(64) std::atomic<size_t> next_{0};  // the first index no thread has taken yet
  std::vector<WorkerProgress> progress_;
  // Threads that stopped polling and sleep: workers waiting for a job, a caller for its workers.
  // Each side checks the other's count after publishing its own change (sequentially consistent),
  // so a sleeper is always woken and nobody takes the mutex while everyone polls.
  alignas(64) std::atomic<int> sleeping_workers_{0};
  std::atomic<bool> caller_sleeping_{false};
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
};

// The process-wide pool the kernels use; sized by set_thread_count (default: hardware threads).
ThreadPool& thread_pool();
void set_thread_count(int threads);
int default_thread_count();

}  // namespace retort

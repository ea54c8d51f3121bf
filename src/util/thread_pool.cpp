#include "util/thread_pool.h"

#include <algorithm>
#include <memory>

namespace retort {

namespace {
thread_local bool in_parallel_region = false;
}

ThreadPool::ThreadPool(int threads) {
  int workers = std::max(threads, 1) - 1;
  for (int i = 0; i < workers; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& worker : workers_) worker.join();
}

void ThreadPool::run_chunks() {
  in_parallel_region = true;
  for (;;) {
    size_t chunk = next_chunk_.fetch_add(1, std::memory_order_relaxed);
    size_t begin = chunk * chunk_;
    if (begin >= count_) break;
    (*body_)(begin, std::min(count_, begin + chunk_));
  }
  in_parallel_region = false;
}

void ThreadPool::worker_loop(int /*index*/) {
  uint64_t seen_generation = 0;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen_generation; });
      if (stopping_) return;
      seen_generation = generation_;
    }
    run_chunks();
    if (busy_workers_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard lock(mutex_);
      done_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(size_t count, size_t grain,
                              const std::function<void(size_t, size_t)>& body) {
  if (count == 0) return;
  grain = std::max<size_t>(grain, 1);
  size_t threads = static_cast<size_t>(size());
  if (workers_.empty() || in_parallel_region || count <= grain) {
    body(0, count);
    return;
  }
  // A few chunks per thread balance uneven work without much scheduling overhead.
  size_t chunks = std::min(threads * 4, (count + grain - 1) / grain);
  {
    std::lock_guard lock(mutex_);
    body_ = &body;
    count_ = count;
    chunk_ = (count + chunks - 1) / chunks;
    next_chunk_.store(0, std::memory_order_relaxed);
    busy_workers_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    ++generation_;
  }
  wake_.notify_all();
  run_chunks();
  std::unique_lock lock(mutex_);
  done_.wait(lock, [&] { return busy_workers_.load(std::memory_order_acquire) == 0; });
  body_ = nullptr;
}

namespace {
std::unique_ptr<ThreadPool>& global_pool() {
  static std::unique_ptr<ThreadPool> pool;
  return pool;
}
}  // namespace

int default_thread_count() {
  return std::max(1u, std::thread::hardware_concurrency());
}

void set_thread_count(int threads) {
  global_pool() = std::make_unique<ThreadPool>(threads > 0 ? threads : default_thread_count());
}

ThreadPool& thread_pool() {
  auto& pool = global_pool();
  if (!pool) pool = std::make_unique<ThreadPool>(default_thread_count());
  return *pool;
}

}  // namespace retort

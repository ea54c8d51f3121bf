#include "util/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <system_error>

#include "util/error.h"

namespace retort {

namespace {
thread_local bool in_parallel_region = false;

// How long an idle thread polls before it sleeps: longer than the usual gap between two loops of
// one decode step, short enough that little is lost when more threads are runnable than there are
// cores (a polling thread may then hold the core the awaited one needs).
constexpr auto kSpinTime = std::chrono::microseconds(50);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Polls `ready` for up to kSpinTime; true once it holds.
template <class Ready>
bool spin_until(Ready ready) {
  const auto deadline = std::chrono::steady_clock::now() + kSpinTime;
  for (;;) {
    for (int i = 0; i < 32; ++i) {
      if (ready()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() >= deadline) return ready();
  }
}
}  // namespace

ThreadPool::ThreadPool(int threads) : progress_(static_cast<size_t>(std::max(threads, 1) - 1)) {
  const size_t workers = progress_.size();
  try {
    for (size_t i = 0; i < workers; ++i) workers_.emplace_back([this, i] { worker_loop(static_cast<int>(i)); });
  } catch (const std::system_error& error) {
    // The destructor does not run for a constructor that throws, and a joinable std::thread
    // destroyed unjoined would terminate the process: stop the workers that did start.
    stopping_.store(true);
    wake(wake_);
    const size_t started = workers_.size();
    for (auto& worker : workers_) worker.join();
    workers_.clear();
    fail(ErrorKind::Io,
         "cannot start thread {} of {}: {}; a limit on threads or memory applies (ulimit -u, a container's "
         "pids.max, ulimit -v): use fewer threads (-t/--threads)",
         started + 2, threads, error.what());
  }
}

ThreadPool::~ThreadPool() {
  stopping_.store(true);
  wake(wake_);
  for (auto& worker : workers_) worker.join();
}

// Taking the mutex first means a thread that counted itself sleeping (a worker, or the caller) is
// inside wait() by now, so the notification cannot fall between its last look and its sleep.
void ThreadPool::wake(std::condition_variable& sleepers) {
  { std::lock_guard lock(mutex_); }
  sleepers.notify_all();
}

bool ThreadPool::all_finished(uint64_t generation) const {
  for (const WorkerProgress& p : progress_)
    if (p.finished.load() != generation) return false;
  return true;
}

// Guided self-scheduling: each grab takes a share of what is left (at least the grain), so the
// first chunks are long and contiguous and the last ones short, and no thread waits at the end of
// a loop for more than one short chunk of another's.
void ThreadPool::run_chunks() {
  in_parallel_region = true;
  const size_t count = job_.count, grain = job_.grain;
  const auto& body = *job_.body;
  const size_t divisor = 2 * static_cast<size_t>(size());
  size_t begin = next_.load(std::memory_order_relaxed);
  while (begin < count) {
    const size_t remaining = count - begin;
    const size_t take = std::min(remaining, std::max(grain, remaining / divisor));
    if (!next_.compare_exchange_weak(begin, begin + take, std::memory_order_relaxed)) continue;  // begin reloaded
    body(begin, begin + take);
    begin = next_.load(std::memory_order_relaxed);
  }
  in_parallel_region = false;
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  auto has_work = [&] { return job_.generation.load() != seen || stopping_.load(); };
  for (;;) {
    if (!spin_until(has_work)) {
      std::unique_lock lock(mutex_);
      sleeping_workers_.fetch_add(1);
      wake_.wait(lock, has_work);
      sleeping_workers_.fetch_sub(1);
    }
    if (stopping_.load()) return;
    seen = job_.generation.load();
    run_chunks();
    progress_[static_cast<size_t>(index)].finished.store(seen);
    if (caller_sleeping_.load()) wake(done_);
  }
}

void ThreadPool::parallel_for(size_t count, size_t grain,
                              const std::function<void(size_t, size_t)>& body) {
  if (count == 0) return;
  grain = std::max<size_t>(grain, 1);
  if (workers_.empty() || in_parallel_region || count <= grain) {
    body(0, count);
    return;
  }
  std::lock_guard dispatch(dispatch_mutex_);
  job_.body = &body;
  job_.count = count;
  job_.grain = grain;
  next_.store(0, std::memory_order_relaxed);
  const uint64_t generation = job_.generation.load(std::memory_order_relaxed) + 1;
  job_.generation.store(generation);  // publishes the fields above and next_'s reset
  if (sleeping_workers_.load() > 0) wake(wake_);
  run_chunks();
  auto done = [&] { return all_finished(generation); };
  if (!spin_until(done)) {
    std::unique_lock lock(mutex_);
    caller_sleeping_.store(true);
    done_.wait(lock, done);
    caller_sleeping_.store(false);
  }
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

// Far more threads than cores only slows the kernels' polling workers down, and thousands of them
// can exhaust memory or a process limit (issue 17: --threads 1000 deadlocked under a memory limit).
namespace {
constexpr int kMaxThreadsPerHardwareThread = 4;
int max_thread_count() { return kMaxThreadsPerHardwareThread * default_thread_count(); }
}  // namespace

void set_thread_count(int threads) {
  require(threads >= 0, ErrorKind::InvalidInput, "the thread count must be 0 (all hardware threads) or positive, got {}",
          threads);
  require(threads <= max_thread_count(), ErrorKind::InvalidInput,
          "{} threads requested, but this machine has {} hardware threads and retort runs at most {} ({} per "
          "hardware thread); use fewer threads (0 = all hardware threads)",
          threads, default_thread_count(), max_thread_count(), kMaxThreadsPerHardwareThread);
  global_pool().reset();  // the old pool's threads end before the new one's start
  global_pool() = std::make_unique<ThreadPool>(threads > 0 ? threads : default_thread_count());
}

ThreadPool& thread_pool() {
  auto& pool = global_pool();
  if (!pool) pool = std::make_unique<ThreadPool>(default_thread_count());
  return *pool;
}

}  // namespace retort

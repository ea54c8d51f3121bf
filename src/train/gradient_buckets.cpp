#include "train/gradient_buckets.h"

#include <algorithm>
#include <system_error>
#include <utility>

#include "util/error.h"

namespace retort::train {

GradientBuckets::GradientBuckets(RankGroup& ranks, float* grads, size_t count, size_t bucket_values)
    : ranks_(ranks), grads_(grads), count_(count), bucket_values_(std::max<size_t>(bucket_values, 1)) {
  try {
    thread_ = std::thread([this] { communicate(); });
  } catch (const std::system_error& error) {
    fail(ErrorKind::Io, "cannot start the thread that sums gradient buckets: {}; a limit on threads applies "
         "(ulimit -u, a container's pids.max): set distributed.bucket_mb: 0 to sum after the backward pass",
         error.what());
  }
}

// Left by an error (finish() not reached): the bucket being summed completes as the other ranks reach
// it; the queued ones are dropped, and the caller ends every rank (dist::end_all_ranks_on_error).
GradientBuckets::~GradientBuckets() {
  {
    std::lock_guard lock(mutex_);
    queue_.clear();
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void GradientBuckets::ready(size_t offset, size_t count) {
  require(offset + count <= count_, ErrorKind::Internal, "gradient range [{}, {}) past the {} gradients", offset,
          offset + count, count_);
  if (count == 0) return;
  const Range range{offset, offset + count};
  announced_.push_back(range);
  if (pending_.begin == pending_.end) {
    pending_ = range;
  } else if (range.end == pending_.begin) {  // the backward walks the layout from its end to its start
    pending_.begin = range.begin;
  } else if (range.begin == pending_.end) {
    pending_.end = range.end;
  } else {
    submit(pending_);
    pending_ = range;
  }
  if (pending_.end - pending_.begin >= bucket_values_) {
    submit(pending_);
    pending_ = {0, 0};
  }
}

void GradientBuckets::submit(Range range) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(range);
    ++in_flight_;
  }
  wake_.notify_one();
}

void GradientBuckets::finish() {
  if (pending_.begin != pending_.end) submit(pending_);
  pending_ = {0, 0};
  // What was never announced, in buckets like the rest.
  std::sort(announced_.begin(), announced_.end(), [](Range a, Range b) { return a.begin < b.begin; });
  size_t next = 0;
  for (const Range& r : announced_) {
    require(r.begin >= next, ErrorKind::Internal, "gradient range [{}, {}) announced twice in one backward", r.begin,
            r.end);
    for (size_t b = next; b < r.begin; b += bucket_values_) submit({b, std::min(r.begin, b + bucket_values_)});
    next = r.end;
  }
  for (size_t b = next; b < count_; b += bucket_values_) submit({b, std::min(count_, b + bucket_values_)});
  announced_.clear();
  std::unique_lock lock(mutex_);
  done_.wait(lock, [&] { return in_flight_ == 0; });
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

void GradientBuckets::communicate() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    const Range range = queue_.front();
    queue_.erase(queue_.begin());
    const bool skip = error_ != nullptr;  // after a failed sum the step is lost: drain the queue
    lock.unlock();
    if (!skip) {
      try {
        ranks_.sum(grads_ + range.begin, range.end - range.begin);
      } catch (...) {
        lock.lock();
        error_ = std::current_exception();
        lock.unlock();
      }
    }
    lock.lock();
    if (--in_flight_ == 0) done_.notify_all();
  }
}

}  // namespace retort::train

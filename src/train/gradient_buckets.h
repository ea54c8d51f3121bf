#pragma once
// distributed.bucket_mb: the model's gradients summed over ranks in buckets while the backward pass
// of a step's last micro-batch is still running, as PyTorch DDP and DeepSpeed overlap them. The
// backward announces each range of the flat gradient it has finished (the LM head and final norm
// first, then the layers from the last to the first, the embedding last); adjacent ranges are
// merged into buckets of about bucket_mb, and a communication thread sums each full bucket while
// the backward goes on to earlier layers. Each element is still summed over ranks 0…N−1 in rank
// order (dist/communicator.h), so the results are bitwise those of one sum after the backward.
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "train/rank_group.h"

namespace retort::train {

class GradientBuckets {
 public:
  // grads: the flat gradient of `count` values whose ranges the backward will announce;
  // bucket_values: values per bucket (ranges are merged until at least this many are pending).
  GradientBuckets(RankGroup& ranks, float* grads, size_t count, size_t bucket_values);
  ~GradientBuckets();
  GradientBuckets(const GradientBuckets&) = delete;
  GradientBuckets& operator=(const GradientBuckets&) = delete;

  // From the backward (one thread): values [offset, offset + count) hold their final gradient.
  void ready(size_t offset, size_t count);
  // After the backward: sums what is pending and every range never announced (a micro-batch with
  // no counted target runs no backward), waits until every value is summed, and rethrows an error
  // of the communication thread. Leaves the object ready for the next step.
  void finish();

 private:
  struct Range {
    size_t begin, end;
  };
  void submit(Range range);  // queues one bucket for the communication thread
  void communicate();        // the communication thread's loop

  RankGroup& ranks_;
  float* grads_;
  size_t count_, bucket_values_;
  Range pending_{0, 0};            // announced, not yet queued (merged while adjacent)
  std::vector<Range> announced_;   // this step's announced ranges, to find the rest at finish()
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<Range> queue_;       // buckets waiting for the communication thread
  size_t in_flight_ = 0;           // queued or being summed
  bool stopping_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace retort::train

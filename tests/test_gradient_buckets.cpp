// The gradient buckets of distributed.bucket_mb (train/gradient_buckets.h) against a rank group
// that stands for one more rank holding a gradient of 1 everywhere: after finish() every value must
// have been summed exactly once (value + 1), on the communication thread, in merged buckets.
#include <gtest/gtest.h>

#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "train/gradient_buckets.h"
#include "util/error.h"

namespace retort::train {
namespace {

class OneMoreRank final : public RankGroup {
 public:
  int ranks() const override { return 2; }
  void sum(float* values, size_t count) override {
    if (fail_next) {
      fail_next = false;
      throw std::runtime_error("MPI_Alltoall failed: a rank exited");
    }
    for (size_t i = 0; i < count; ++i) values[i] += 1.0f;
    std::lock_guard lock(mutex);
    calls.push_back({size_t(values - base), count});
    threads.push_back(std::this_thread::get_id());
  }
  struct Call {
    size_t offset, count;
    bool operator==(const Call&) const = default;
  };
  float* base = nullptr;
  bool fail_next = false;
  std::mutex mutex;
  std::vector<Call> calls;
  std::vector<std::thread::id> threads;
};

TEST(GradientBuckets, EveryValueIsSummedOnceOnTheCommunicationThread) {
  std::vector<float> grads(1000);
  for (size_t i = 0; i < grads.size(); ++i) grads[i] = float(i);
  OneMoreRank ranks;
  ranks.base = grads.data();
  GradientBuckets buckets(ranks, grads.data(), grads.size(), 300);
  // Announced as a backward does: from the end of the layout towards its start, with a gap (values
  // 100..199 never announced, as a tensor with no gradient this step).
  buckets.ready(900, 100);
  buckets.ready(700, 200);   // merged with [900, 1000): 300 values, a full bucket
  buckets.ready(500, 200);
  buckets.ready(200, 300);   // merged: [200, 700), past 300: the second bucket
  buckets.ready(0, 100);
  buckets.finish();
  for (size_t i = 0; i < grads.size(); ++i) ASSERT_EQ(grads[i], float(i) + 1.0f) << i;
  using Call = OneMoreRank::Call;
  EXPECT_EQ(ranks.calls, (std::vector<Call>{{700, 300}, {200, 500}, {0, 100}, {100, 100}}));
  for (const auto& id : ranks.threads) EXPECT_NE(id, std::this_thread::get_id());
}

TEST(GradientBuckets, AStepWithoutAnnouncementsSumsEverythingAndTheNextStepWorks) {
  std::vector<float> grads(250, 2.0f);
  OneMoreRank ranks;
  ranks.base = grads.data();
  GradientBuckets buckets(ranks, grads.data(), grads.size(), 100);
  buckets.finish();  // a micro-batch with no counted target runs no backward
  for (float g : grads) ASSERT_EQ(g, 3.0f);
  EXPECT_EQ(ranks.calls.size(), 3u);
  buckets.ready(0, 250);
  buckets.finish();
  for (float g : grads) ASSERT_EQ(g, 4.0f);
}

TEST(GradientBuckets, AFailedSumIsRethrownByFinish) {
  std::vector<float> grads(64, 0.0f);
  OneMoreRank ranks;
  ranks.base = grads.data();
  GradientBuckets buckets(ranks, grads.data(), grads.size(), 16);
  ranks.fail_next = true;
  buckets.ready(32, 32);
  EXPECT_THROW(buckets.finish(), std::runtime_error);
  buckets.ready(0, 64);  // the object is usable again (the caller would have ended the run)
  buckets.finish();
  EXPECT_EQ(grads[0], 1.0f);
}

TEST(GradientBuckets, ARangeAnnouncedTwiceIsAnInternalError) {
  std::vector<float> grads(64, 0.0f);
  OneMoreRank ranks;
  ranks.base = grads.data();
  GradientBuckets buckets(ranks, grads.data(), grads.size(), 1000);
  buckets.ready(0, 32);
  buckets.ready(16, 16);
  EXPECT_THROW(buckets.finish(), Error);
  EXPECT_THROW(buckets.ready(60, 10), Error);  // past the gradient
}

}  // namespace
}  // namespace retort::train

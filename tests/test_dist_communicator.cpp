// dist::Communicator: the single-process one directly, and the MPI one by running this test binary
// under `mpirun -np 4` (DistMpiWorker runs only there; it skips in an ordinary test run). The
// workers check every collective against sums computed locally in the documented order, bitwise.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "dist/communicator.h"
#include "test_support.h"
#include "util/error.h"

namespace retort::dist {
namespace {

// Values whose float sums depend on the order they are added in.
float value(int rank, size_t i) {
  const float sign = i % 2 ? -1.0f : 1.0f;
  return sign / float(1 + rank * 7 + int(i % 13)) + 1e-3f * float(rank) + 1e4f * float(i % 3 == 0);
}

std::vector<float> values(int rank, size_t count) {
  std::vector<float> v(count);
  for (size_t i = 0; i < count; ++i) v[i] = value(rank, i);
  return v;
}

TEST(DistSingle, CollectivesAreTheIdentity) {
  auto single = make_single_communicator();
  EXPECT_EQ(single->rank(), 0);
  EXPECT_EQ(single->size(), 1);
  std::vector<float> data = values(0, 37), expected = data, out(37);
  single->allreduce(data.data(), data.size(), ReduceOp::Mean);
  EXPECT_EQ(data, expected);
  single->reduce_scatter(data.data(), out.data(), out.size(), ReduceOp::Sum);
  EXPECT_EQ(out, expected);
  EXPECT_EQ(single->sum(41), 41);
  NodeSplit split = split_by_node(*single);
  hierarchical_allreduce(split, data.data(), data.size(), ReduceOp::Sum);
  EXPECT_EQ(data, expected);
}

TEST(DistSingle, ParsesAllreduceNamesAndRefusesOthers) {
  EXPECT_EQ(parse_allreduce_algorithm("flat"), AllreduceAlgorithm::Flat);
  EXPECT_EQ(parse_allreduce_algorithm("hierarchical"), AllreduceAlgorithm::Hierarchical);
  try {
    parse_allreduce_algorithm("ring");
    FAIL() << "'ring' was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected flat or hierarchical"), std::string::npos) << e.what();
  }
}

// Under mpirun with RETORT_RANKS_PER_NODE=2: 4 ranks as 2 nodes of 2.
TEST(DistMpiWorker, CollectivesSumInRankOrder) {
  if (!launched_by_mpi()) GTEST_SKIP() << "runs only under mpirun (DistMpi.* starts it)";
  Communicator& w = world();
  ASSERT_EQ(w.backend(), "mpi");
  const int n = w.size();
  ASSERT_EQ(n, 4);
  const size_t count = 1001;  // not a multiple of the ranks: the padding is exercised
  std::vector<float> flat_expected(count), hier_expected(count);
  for (size_t i = 0; i < count; ++i) {
    float s = value(0, i);
    for (int r = 1; r < n; ++r) s += value(r, i);
    flat_expected[i] = s;
    const float node0 = value(0, i) + value(1, i), node1 = value(2, i) + value(3, i);
    hier_expected[i] = node0 + node1;
  }
  std::vector<float> data = values(w.rank(), count);
  w.allreduce(data.data(), count, ReduceOp::Sum);
  EXPECT_EQ(data, flat_expected);

  NodeSplit split = split_by_node(w);
  EXPECT_EQ(split.node->size(), 2);
  EXPECT_EQ(split.cross->size(), 2);
  data = values(w.rank(), count);
  hierarchical_allreduce(split, data.data(), count, ReduceOp::Sum);
  EXPECT_EQ(data, hier_expected);
  data = values(w.rank(), count);
  hierarchical_allreduce(split, data.data(), count, ReduceOp::Mean);
  for (size_t i = 0; i < count; ++i) EXPECT_EQ(data[i], hier_expected[i] / 4.0f) << i;

  // Reduce-scatter then all-gather of shards of 5: rank r ends with its shard's mean.
  const size_t shard = 5;
  std::vector<float> mine(shard), all(shard * size_t(n));
  data = values(w.rank(), shard * size_t(n));
  w.reduce_scatter(data.data(), mine.data(), shard, ReduceOp::Mean);
  for (size_t i = 0; i < shard; ++i) EXPECT_EQ(mine[i], flat_expected[size_t(w.rank()) * shard + i] / 4.0f) << i;
  w.all_gather(mine.data(), all.data(), shard);
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i], flat_expected[i] / 4.0f) << i;

  EXPECT_EQ(w.sum(int64_t(w.rank()) + (int64_t(1) << 40)), 6 + 4 * (int64_t(1) << 40));
  uint64_t word = w.rank() == 2 ? 0x1234567890abcdefull : 0;
  w.broadcast(&word, sizeof word, 2);
  EXPECT_EQ(word, 0x1234567890abcdefull);
}

TEST(DistMpi, FourRanksOnTwoSimulatedNodes) {
  if (!mpi_compiled_in()) {
    if (test::running_in_ci()) FAIL() << "MPI is not compiled in under CI: " << mpi_why_not();
    GTEST_SKIP() << "MPI not compiled in: " << mpi_why_not();
  }
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  const test::CommandResult run =
      test::run_command(test::mpirun_prefix(4, "RETORT_RANKS_PER_NODE=2") + self +
                  " --gtest_color=no --gtest_filter=DistMpiWorker.CollectivesSumInRankOrder 2>&1");
  EXPECT_EQ(run.status, 0) << run.output;
  size_t passed = 0;
  for (size_t at = run.output.find("[       OK ] DistMpiWorker"); at != std::string::npos;
       at = run.output.find("[       OK ] DistMpiWorker", at + 1))
    ++passed;
  EXPECT_EQ(passed, 4u) << "every rank must run the worker, not skip it:\n" << run.output;
}

}  // namespace
}  // namespace retort::dist

#include "dist/data_parallel.h"

#include <cstdio>

#include "dist/communicator.h"
#include "train/run_setup.h"
#include "util/error.h"
#include "util/log.h"

namespace retort::dist {

namespace {

class DataParallelGroup final : public train::RankGroup {
 public:
  DataParallelGroup(Communicator& world, AllreduceAlgorithm algorithm) : world_(world), algorithm_(algorithm) {
    if (algorithm_ == AllreduceAlgorithm::Hierarchical) nodes_ = split_by_node(world_);
  }
  int rank() const override { return world_.rank(); }
  int ranks() const override { return world_.size(); }
  void sum(float* values, size_t count) override {
    if (algorithm_ == AllreduceAlgorithm::Hierarchical) {
      hierarchical_allreduce(nodes_, values, count, ReduceOp::Sum);
    } else {
      world_.allreduce(values, count, ReduceOp::Sum);
    }
  }
  void sum(double* values, size_t count) override { world_.sum(values, count); }
  void barrier() override { world_.barrier(); }
  bool sums_from_any_thread() const override { return world_.serialized_threads(); }

  // Flat: a reduce-scatter over the world's shards (half an allreduce's traffic), the same rank-order
  // sums. Hierarchical sums node by node, so it allreduces to keep its order (and its results).
  void sum_own_shard(float* values, size_t count, size_t shard) override {
    if (algorithm_ == AllreduceAlgorithm::Hierarchical) return sum(values, count);
    const train::ShardRange mine = train::ShardRange::of(rank(), count, shard);
    padded_.assign(size_t(ranks()) * shard, 0.0f);
    std::copy_n(values, count, padded_.data());
    shard_.resize(shard);
    world_.reduce_scatter(padded_.data(), shard_.data(), shard, ReduceOp::Sum);
    std::copy_n(shard_.data(), mine.size(), values + mine.begin);
  }
  void share_shards(float* values, size_t count, size_t shard) override {
    const train::ShardRange mine = train::ShardRange::of(rank(), count, shard);
    shard_.assign(shard, 0.0f);
    std::copy_n(values + mine.begin, mine.size(), shard_.data());
    padded_.resize(size_t(ranks()) * shard);
    world_.all_gather(shard_.data(), padded_.data(), shard);
    std::copy_n(padded_.data(), count, values);
  }
  void gather_to_first(const float* mine, size_t shard, float* out) override {
    world_.gather_bytes(mine, out, shard * sizeof(float), 0);
  }

 private:
  Communicator& world_;
  AllreduceAlgorithm algorithm_;
  NodeSplit nodes_;
  std::vector<float> padded_, shard_;  // reused between steps
};

uint64_t fnv1a(const std::string& text) {
  uint64_t hash = 1469598103934665603ull;
  for (unsigned char c : text) hash = (hash ^ c) * 1099511628211ull;
  return hash;
}

// Every rank learns how many ranks' settings differ from rank 0's, so all of them stop together.
void require_same_settings(Communicator& world, const std::string& settings) {
  const uint64_t mine = fnv1a(settings);
  uint64_t root = mine;
  world.broadcast(&root, sizeof root, 0);
  const int64_t differing = world.sum(int64_t(mine != root));
  require(differing == 0, ErrorKind::InvalidInput,
          "{} of the {} ranks were started with settings that differ from rank 0's (settings hash {:016x} on rank 0, "
          "{:016x} on rank {}): start every rank with the same config file and flags (the same --resume too)",
          differing, world.size(), root, mine, world.rank());
}

}  // namespace

std::unique_ptr<train::RankGroup> join_data_parallel(const train::TrainConfig& c,
                                                     const std::vector<train::ConfigEntry>& entries, bool resume) {
  Communicator& w = world();
  if (w.rank() > 0) spdlog::set_level(spdlog::level::warn);  // one log of the run: rank 0's
  if (w.size() > 1) require_same_settings(w, train::settings_text(entries) + (resume ? "--resume\n" : ""));
  if (!c.distributed_enable) {
    require(w.size() == 1, ErrorKind::InvalidInput,
            "this process is one of {} MPI ranks, but distributed.enable is false: set distributed: {{enable: true, "
            "device_num: {}}} to train data parallel, or run without mpirun", w.size(), w.size());
    return std::make_unique<train::RankGroup>();
  }
  require(!launched_by_mpi() || mpi_compiled_in(), ErrorKind::Unsupported,
          "distributed.enable: true under mpirun, but this retort was built without MPI ({}): install libopenmpi-dev "
          "openmpi-bin and rebuild", mpi_why_not());
  require(c.device_num == w.size(), ErrorKind::InvalidInput,
          "distributed.device_num is {} but the MPI world size is {} (mpirun -np): set device_num: {} or start "
          "mpirun -np {}", c.device_num, w.size(), w.size(), c.device_num);
  if (w.size() == 1) return std::make_unique<train::RankGroup>();
  return std::make_unique<DataParallelGroup>(w, parse_allreduce_algorithm(c.allreduce));
}

void end_all_ranks_on_error(const std::exception& error) {
  if (!launched_by_mpi() || world().size() == 1) return;
  std::fprintf(stderr, "error: rank %d of %d: %s\n", world().rank(), world().size(), error.what());
  std::fflush(stderr);
  abort_all_ranks(1);
}

}  // namespace retort::dist

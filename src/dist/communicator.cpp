#include "dist/communicator.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>

#include "util/error.h"

namespace retort::dist {

// Defined in mpi_communicator.cpp (the only file that includes mpi.h).
std::unique_ptr<Communicator> make_mpi_world();

void Communicator::reduce_scatter(const float* input, float* output, size_t shard, ReduceOp op) {
  const int n = size();
  if (n == 1) {
    std::copy_n(input, shard, output);
    return;
  }
  exchange_.resize(size_t(n) * shard);
  all_to_all(input, exchange_.data(), shard);
  // Rank order, element by element: the fixed order that makes the result reproducible.
  for (size_t i = 0; i < shard; ++i) {
    float s = exchange_[i];
    for (int r = 1; r < n; ++r) s += exchange_[size_t(r) * shard + i];
    output[i] = op == ReduceOp::Mean ? s / float(n) : s;
  }
}

void Communicator::allreduce(float* data, size_t count, ReduceOp op) {
  const size_t n = size_t(size());
  if (n == 1) return;
  const size_t shard = (count + n - 1) / n;
  padded_.resize(n * shard);
  std::fill(padded_.begin() + std::ptrdiff_t(count), padded_.end(), 0.0f);
  std::copy_n(data, count, padded_.data());
  shard_.resize(shard);
  reduce_scatter(padded_.data(), shard_.data(), shard, op);
  all_gather(shard_.data(), padded_.data(), shard);
  std::copy_n(padded_.data(), count, data);
}

void Communicator::sum(double* values, size_t count) {
  const size_t n = size_t(size());
  if (n == 1) return;
  // In pieces, so that a whole model's f64 gradients (distributed.reproducible) need ranks × 2 MiB
  // here, not ranks × the model.
  constexpr size_t kPiece = size_t(1) << 18;
  for (size_t first = 0; first < count; first += kPiece) {
    const size_t m = std::min(kPiece, count - first);
    gathered_.resize(n * m);
    all_gather_bytes(values + first, gathered_.data(), m * sizeof(double));
    for (size_t i = 0; i < m; ++i) {
      double s = gathered_[i];
      for (size_t r = 1; r < n; ++r) s += gathered_[r * m + i];
      values[first + i] = s;
    }
  }
}

namespace {

class SingleCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "single"; }
  void all_gather_bytes(const void* input, void* output, size_t bytes) override { std::memcpy(output, input, bytes); }
  void gather_bytes(const void* input, void* output, size_t bytes, int) override { std::memcpy(output, input, bytes); }
  void broadcast(void*, size_t, int root) override {
    require(root == 0, ErrorKind::Internal, "broadcast from rank {} in a single process", root);
  }
  int64_t sum(int64_t value) override { return value; }
  void barrier() override {}
  std::unique_ptr<Communicator> split(int, int) override { return std::make_unique<SingleCommunicator>(); }
  std::unique_ptr<Communicator> split_shared() override { return std::make_unique<SingleCommunicator>(); }

 protected:
  void all_to_all(const float* input, float* output, size_t shard) override { std::copy_n(input, shard, output); }
};

// RETORT_RANKS_PER_NODE as a positive number, or 0 when unset.
int ranks_per_node_override() {
  const char* text = std::getenv("RETORT_RANKS_PER_NODE");
  if (!text || !*text) return 0;
  int k = 0;
  const auto [end, ec] = std::from_chars(text, text + std::strlen(text), k);
  require(ec == std::errc() && *end == '\0' && k > 0, ErrorKind::InvalidInput,
          "RETORT_RANKS_PER_NODE='{}': expected a positive whole number of ranks per node, or unset it to let MPI "
          "find which ranks share a machine", text);
  return k;
}

}  // namespace

std::unique_ptr<Communicator> make_single_communicator() { return std::make_unique<SingleCommunicator>(); }

bool launched_by_mpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"})
    if (std::getenv(name)) return true;
  return false;
}

Communicator& world() {
  static std::unique_ptr<Communicator> communicator =
      launched_by_mpi() && mpi_compiled_in() ? make_mpi_world() : make_single_communicator();
  return *communicator;
}

NodeSplit split_by_node(Communicator& world) {
  NodeSplit split;
  if (const int k = ranks_per_node_override(); k > 0) {
    require(world.size() % k == 0, ErrorKind::InvalidInput,
            "RETORT_RANKS_PER_NODE={} does not divide the {} ranks into whole nodes: pick a divisor of {}", k,
            world.size(), world.size());
    split.node = world.split(world.rank() / k, world.rank());
  } else {
    split.node = world.split_shared();
  }
  // Every rank learns whether all nodes have the same size: they do exactly when
  // W · Σ L² = (Σ L)² over ranks (L: each rank's node size), the same verdict on every rank.
  const int64_t local = split.node->size();
  const int64_t sum = world.sum(local), sum_squares = world.sum(local * local);
  require(int64_t(world.size()) * sum_squares == sum * sum, ErrorKind::InvalidInput,
          "hierarchical allreduce needs the same number of ranks on every node, but this node has {} of {} ranks: "
          "start as many ranks per machine (mpirun --map-by ppr:K:node) or use distributed.allreduce: flat",
          local, world.size());
  split.cross = world.split(split.node->rank(), world.rank());
  return split;
}

AllreduceAlgorithm parse_allreduce_algorithm(const std::string& name) {
  if (name == "flat") return AllreduceAlgorithm::Flat;
  if (name == "hierarchical") return AllreduceAlgorithm::Hierarchical;
  fail(ErrorKind::InvalidInput, "distributed.allreduce: '{}' is not an algorithm; expected flat or hierarchical", name);
}

void hierarchical_allreduce(NodeSplit& split, float* data, size_t count, ReduceOp op) {
  Communicator& node = *split.node;
  Communicator& cross = *split.cross;
  const size_t local = size_t(node.size());
  const size_t shard = (count + local - 1) / local;
  std::vector<float>& padded = split.padded;
  std::vector<float>& mine = split.shard;
  padded.resize(local * shard);
  std::fill(padded.begin() + std::ptrdiff_t(count), padded.end(), 0.0f);
  mine.resize(shard);
  std::copy_n(data, count, padded.data());
  node.reduce_scatter(padded.data(), mine.data(), shard, ReduceOp::Sum);
  cross.allreduce(mine.data(), shard, ReduceOp::Sum);
  if (op == ReduceOp::Mean) {
    const float ranks = float(local * size_t(cross.size()));
    for (float& v : mine) v /= ranks;
  }
  node.all_gather(mine.data(), padded.data(), shard);
  std::copy_n(padded.data(), count, data);
}

}  // namespace retort::dist

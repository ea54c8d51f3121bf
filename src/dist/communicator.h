#pragma once
// Collectives over flat f32 buffers for data-parallel training, behind one interface: a single
// process (every collective is the identity), MPI (Open MPI, when compiled in and the process was
// started by mpirun), and room for NCCL on GPUs or HCCL on Ascend NPUs.
//
// Reductions have a fixed order: every element's sum is taken over ranks 0, 1, …, N−1 in that
// order on whichever rank owns its shard, whatever algorithm the transport picks for moving the
// bytes. So a run is bitwise reproducible for a given number of ranks and node layout.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace retort::dist {

enum class ReduceOp { Sum, Mean };

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "single", "mpi"

  // Every rank's `count` values in, the element-wise reduction over ranks out, on every rank.
  void allreduce(float* data, size_t count, ReduceOp op);
  // input: size()·shard values on every rank; output: rank r's shard (values r·shard … (r+1)·shard−1)
  // reduced over ranks.
  void reduce_scatter(const float* input, float* output, size_t shard, ReduceOp op);
  // input: this rank's `shard` values; output: size()·shard values, rank r's at r·shard.
  void all_gather(const float* input, float* output, size_t shard) {
    all_gather_bytes(input, output, shard * sizeof(float));
  }
  virtual void all_gather_bytes(const void* input, void* output, size_t bytes) = 0;
  // Rank `root` receives every rank's `bytes` (rank r's at r·bytes in `output`, used on root only).
  virtual void gather_bytes(const void* input, void* output, size_t bytes, int root) = 0;
  // Element-wise sums of doubles over ranks, added in rank order (loss terms; reproducible gradients).
  void sum(double* values, size_t count);
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  // Sums one int64 per rank (counts such as a step's targets: exact, no rounding).
  virtual int64_t sum(int64_t value) = 0;
  virtual void barrier() = 0;
  // Whether a thread other than the one that started MPI may call the collectives (one thread at a
  // time: MPI_THREAD_SERIALIZED), as the gradient buckets' communication thread does.
  virtual bool serialized_threads() const { return true; }
  // A communicator of the ranks that passed the same `color`, ordered by `key`.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;
  // Ranks that share this rank's memory (one machine), as MPI_COMM_TYPE_SHARED finds them.
  virtual std::unique_ptr<Communicator> split_shared() = 0;

 protected:
  // Moves the bytes of a reduce-scatter: out[s·shard…] receives rank s's values of this rank's
  // shard, for every rank s (an all-to-all); the base class then sums them in rank order.
  virtual void all_to_all(const float* input, float* output, size_t shard) = 0;

 private:
  std::vector<float> padded_, shard_, exchange_;  // reused between steps: no allocation per call
  std::vector<double> gathered_;
};

// The process's communicator: MPI when compiled in and started by mpirun (or another MPI launcher),
// else the single-process one. MPI is initialised on first use and finalised at exit.
Communicator& world();
// Whether this build has MPI, and if not, why (for `retort doctor` and error messages).
bool mpi_compiled_in();
std::string mpi_why_not();
// True when the environment shows an MPI launcher started this process.
bool launched_by_mpi();

// After an error on this rank: ends every rank of an MPI job (MPI_Abort with exit_code) so that
// none waits forever in a collective; does nothing outside MPI.
void abort_all_ranks(int exit_code);

// A single process's communicator (also what world() is without MPI).
std::unique_ptr<Communicator> make_single_communicator();

// Two levels for hierarchical allreduce: the ranks of this node, and across nodes the ranks that
// have this rank's node-local index. RETORT_RANKS_PER_NODE=K groups ranks 0..K−1, K..2K−1, … as
// nodes instead of asking MPI which share memory (to test the two levels on one machine).
struct NodeSplit {
  std::unique_ptr<Communicator> node, cross;
  std::vector<float> padded, shard;  // hierarchical_allreduce's buffers, reused between steps
};
NodeSplit split_by_node(Communicator& world);

enum class AllreduceAlgorithm { Flat, Hierarchical };
AllreduceAlgorithm parse_allreduce_algorithm(const std::string& name);  // "flat" | "hierarchical"

// Reduce-scatter inside each node, allreduce of each shard across nodes, all-gather inside the
// node. Needs the same number of ranks on every node (the error says how many were found).
void hierarchical_allreduce(NodeSplit& split, float* data, size_t count, ReduceOp op);

}  // namespace retort::dist

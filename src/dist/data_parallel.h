#pragma once
// Data-parallel training over MPI ranks: the train::RankGroup that `retort train` and `retort
// distill` run their one step loop with (gradients summed once per optimizer step, flat or
// hierarchical), after checking that every rank was started the same way.
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "train/rank_group.h"
#include "train/train_config.h"

namespace retort::dist {

// Joins the ranks this process was started with (world() from dist/communicator.h). Checks, in
// this order and with the same verdict on every rank: that all ranks have the same settings
// (the parsed config's entries and `resume`, hashed and compared with rank 0's), that distributed.enable
// matches how the process was started, that MPI is compiled in when it is asked for, and that
// distributed.device_num is the MPI world size. Without mpirun and with enable: false this is the
// single process, exactly as before. Ranks other than 0 log warnings and errors only.
std::unique_ptr<train::RankGroup> join_data_parallel(const train::TrainConfig& config,
                                                     const std::vector<train::ConfigEntry>& entries, bool resume);

// After an error in a data-parallel run: prints it as this rank's and ends every rank (MPI_Abort),
// so none waits forever in a collective. Does nothing with one rank (the CLI reports the error).
void end_all_ranks_on_error(const std::exception& error);

// What `retort train` and `retort distill` do with their ranks: join them, run `run(RankGroup*)`,
// and if it throws, end every rank (end_all_ranks_on_error) before the error goes to the CLI.
template <class Run>
auto run_on_ranks(const train::TrainConfig& config, const std::vector<train::ConfigEntry>& entries, bool resume,
                  Run&& run) {
  const auto ranks = join_data_parallel(config, entries, resume);
  try {
    return run(ranks.get());
  } catch (const std::exception& error) {
    end_all_ranks_on_error(error);
    throw;
  }
}

}  // namespace retort::dist

#pragma once
// The training loop behind `retort train`: model and data set up from a TrainConfig, then steps of
// gradient accumulation, clipping, AdamW and the schedule, with evaluation, checkpoints, the
// metrics log and the HTML report along the way. A resumed run continues to the bitwise-identical
// result of an uninterrupted one (same thread count).
#include <string>
#include <vector>

#include "train/rank_group.h"
#include "train/train_config.h"

namespace retort::train {

struct TrainRunOptions {
  bool resume = false;  // continue from the newest checkpoint in checkpointing.dir
  RankGroup* ranks = &single_process();  // the data-parallel ranks (dist/data_parallel.h under mpirun)
};

struct TrainRunResult {
  int64_t steps = 0;
  double final_loss = 0;
  std::string last_checkpoint;
};

TrainRunResult run_training(const TrainConfig& config, const std::vector<ConfigEntry>& entries,
                            const TrainRunOptions& options);

}  // namespace retort::train

#pragma once
// What `retort train` and `retort distill` do the same way before their first step: threads, the
// training model's options, the data sets, and opening a run directory (a fresh run, refused where
// checkpoints already are, or a resume from the newest checkpoint with its metrics so far).
#include <cstdint>
#include <string>
#include <vector>

#include "train/checkpoint.h"
#include "train/data.h"
#include "train/optimizer.h"
#include "train/rank_group.h"
#include "train/report.h"
#include "train/train_config.h"
#include "train/train_model.h"

namespace retort {
class Tokenizer;
}

namespace retort::train {

// Sizes the thread pool from `threads` (0: all hardware threads); BLAS runs single-threaded inside
// it, since the training GEMM splits the work over the pool itself.
void set_run_threads(const TrainConfig& c);
// Every setting with its value, "(default)" where the file did not give it: one per line.
std::string settings_text(const std::vector<ConfigEntry>& entries);
// memory.activation_checkpointing and memory.mixed_precision as model options.
TrainModelOptions train_model_options(const TrainConfig& c);
// The tokenizer directory for a tokenizer.json path or its directory ("" stays "").
std::string tokenizer_dir_of(const std::string& path);
// A content hash of a file (the token cache's key for the tokenizer).
std::string file_fingerprint(const std::string& path);

struct DataSets {
  std::vector<Example> train, validation;
};
// data.train (split by val_fraction unless data.validation is given) and the validation set,
// tokenized once and cached in checkpointing.dir/token-cache (by rank 0 before the other ranks read it).
DataSets load_data_sets(const TrainConfig& c, const Tokenizer* tokenizer, const std::string& tokenizer_fingerprint,
                        int64_t vocab_size, RankGroup& ranks = single_process());

// Fails if a fresh run would go into a directory that already holds checkpoints (before anything
// is written there), or if checkpointing.dir is not a directory or is one of the run's inputs
// (model_init, tokenizer, data files, and `extra_inputs` such as a teacher).
void refuse_used_run_directory(const TrainConfig& c, bool resume, const std::vector<std::string>& extra_inputs = {});

struct OpenedRun {
  TrainerState state;               // step 0 with the config's seed, or the checkpoint's
  std::vector<StepRecord> records;  // metrics of the steps already taken (resume)
  std::string resumed_from;         // the checkpoint resumed from; "" for a fresh run
  std::string metrics_path, report_path;
};
// Opens checkpointing.dir for a run. resume: loads the newest checkpoint's weights into `params`
// and Adam moments into `optimizer` (its step count too), and the metrics up to that step. Fresh:
// refuses a used directory, then loads model.init's weights or initialises randomly (seeded). Either
// way the directory exists afterwards and metrics.jsonl holds exactly `records`.
// With several ranks, each loads the same checkpoint, rank 0 alone writes, and a checkpoint saved by
// another number of ranks is refused.
OpenedRun open_or_resume_run(const TrainConfig& c, bool resume, const ModelConfig& config,
                             const ParameterLayout& layout, float* params, AdamW& optimizer,
                             const RankGroup& ranks = single_process());

}  // namespace retort::train

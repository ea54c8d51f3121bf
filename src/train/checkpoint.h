#pragma once
// Training checkpoints: DIR/step-NNNNNNNN/ is a Hugging Face checkpoint (config.json,
// model.safetensors in f32, tokenizer files) that transformers and retort load, plus
// optimizer.safetensors (Adam moments under exp_avg.<name> / exp_avg_sq.<name>) and
// trainer_state.json (step, data position, seed, RNG state). A checkpoint is written into a
// temporary directory and renamed into place, so a crash never leaves a half-written one; only the
// last N are kept.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "io/model_config.h"
#include "train/data.h"
#include "train/parameters.h"

namespace retort::train {

struct TrainerState {
  int64_t step = 0;             // optimizer steps completed
  DataPosition data;            // where the training loader continues
  uint64_t seed = 0;
  uint64_t rng_state = 0;       // the trainer's generator (reserved for dropout/sampling; saved for exactness)
  int64_t tokens_seen = 0;
  int64_t ranks = 1;            // data-parallel ranks of the run (saved only when more than one)
  // fp16 dynamic loss scaling (saved only when used: loss_scale > 0): the current scale, the good
  // steps since it last changed, and the steps skipped for overflowing gradients (the optimizer has
  // taken step − skipped_steps updates, which its bias correction counts).
  double loss_scale = 0;
  int64_t loss_scale_good_steps = 0;
  int64_t skipped_steps = 0;
};

struct CheckpointContents {
  const ModelConfig* config;
  const ParameterLayout* layout;
  const float* params;
  const float* moments;             // [2P] or null
  TrainerState state;
  std::string tokenizer_dir;        // tokenizer files copied from here when present
};

// Writes OUTPUT_DIR/step-NNNNNNNN atomically and removes all but the newest keep_last; returns its path.
// write_extra (optional) adds more files to the checkpoint's directory before it is marked complete.
std::string save_checkpoint(const std::string& output_dir, const CheckpointContents& contents, int64_t keep_last,
                            const std::function<void(const std::string& dir)>& write_extra = {});

// The newest complete checkpoint under output_dir, if any.
std::optional<std::string> latest_checkpoint(const std::string& output_dir);

// Loads parameters, moments and state from a checkpoint written by save_checkpoint, after checking
// that it is a checkpoint of the same model (config.json and tensor shapes).
TrainerState load_checkpoint(const std::string& dir, const ModelConfig& config, const ParameterLayout& layout,
                             float* params, float* moments);

// Removes the temporary directories (".step-N.tmp-PID") that checkpoints being written by a
// process that no longer runs (killed mid-save) left in `output_dir`; returns how many.
int remove_stale_checkpoint_temps(const std::string& output_dir);

// A checkpoint's trainer_state.json; a damaged one (not JSON, nested too deep, a field missing, of
// the wrong type or negative) is an InvalidInput error saying how to go on.
TrainerState read_trainer_state(const std::string& path);

}  // namespace retort::train

#pragma once
// The one optimizer-step loop behind `retort train` and `retort distill`: micro-batches of gradient
// accumulation, the non-finite checks, one global gradient norm and clip over every trained buffer,
// AdamW, the schedule, validation, checkpoints, metrics and the report. What differs between the
// commands (the loss and what it trains besides the model) is an Objective; anything added to the
// step (an allreduce of the gradients, say) goes here once and serves both.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "train/optimizer.h"
#include "train/rank_group.h"
#include "train/report.h"
#include "train/run_setup.h"

namespace retort::train {

// A flat buffer the optimizer updates, with its gradient and its own AdamW state.
struct TrainedBuffer {
  float* params;
  float* grads;
  size_t count;
  AdamW* optimizer;
};

// The scales every micro-batch's loss is multiplied by, known before any backward, so that k
// accumulated micro-batches give exactly the gradient of one big batch.
struct StepScales {
  int64_t targets = 0;  // the step's counted targets (all micro-batches)
  double token = 0;     // 1 / the step's counted targets (0 when there are none)
  double sequence = 0;  // 1 / the step's sequences
  double loss_scale = 1;  // fp16's dynamic loss scale: multiplies the gradients only, not the loss terms
};


class Objective {
 public:
  virtual ~Objective() = default;
  // For messages: "training" / "distillation", and what to try when the loss is not finite.
  virtual const char* activity() const = 0;
  virtual const char* nonfinite_advice() const = 0;
  // Every buffer the optimizer updates, the model's first; the gradient norm and clip cover all.
  virtual std::vector<TrainedBuffer> trained_buffers() = 0;
  // Before a step's micro-batches (step counts from 0): gradients zeroed, per-step settings fixed.
  virtual void begin_step(int64_t step) = 0;
  // Passed on to the model (the first trained buffer): told during its backward which ranges of its
  // gradient are final (TrainModel::set_gradient_ready); an empty function stops the calls.
  virtual void set_gradient_ready(std::function<void(size_t offset, size_t count)> ready) = 0;
  // Forward and backward of one micro-batch, adding d(scaled loss)/dθ into the gradients.
  virtual void accumulate(const int32_t* inputs, const int32_t* targets, const StepScales& scales) = 0;
  // The step's summed loss terms so far on this rank (summed over ranks by the loop), and the step's
  // loss from their sums over all ranks (the value logged and checked for finiteness).
  virtual std::vector<double> step_sums() const = 0;
  virtual double step_loss(const std::vector<double>& sums, const StepScales& scales) = 0;
  // After the optimizer update, on every rank (running statistics); `writes`: this rank logs.
  virtual void end_step(const StepRecord& record, bool writes) = 0;
  // The validation loss, logged by the objective.
  virtual double validate(int64_t step) = 0;
  virtual void log_step(const StepRecord& record, int64_t total_steps, double eta_seconds) const = 0;
  // Adds the objective's own state to a checkpoint directory before it is marked complete.
  virtual void save_state(const std::string& dir) const = 0;
};

// What the loop checkpoints and reports besides the objective's own state.
struct LoopSetup {
  const TrainConfig* config;
  const std::vector<ConfigEntry>* entries;
  std::string title;          // the report's title
  const ModelConfig* model_config;
  const ParameterLayout* layout;
  const float* params;        // the model's parameters and Adam moments, for checkpoints
  const AdamW* optimizer;
  std::string tokenizer_dir;  // copied into each checkpoint
  const std::vector<Example>* train_set;
  bool has_validation = false;
  RankGroup* ranks = &single_process();
  // > 0: stop after this step (validated and checkpointed as a last step would be) while the
  // schedule still spans config.steps, so a later resume continues exactly where an uninterrupted
  // run would be (the rungs of `retort tune distill`).
  int64_t stop_at_step = 0;
};

struct LoopResult {
  int64_t steps = 0;
  double final_loss = 0;
  std::string last_checkpoint;
};

// Mean loss per counted target over the first eval_batches fixed validation batches (batch_size
// sequences each, handed to the model model_batch(c) at a time); loss_sum(inputs, targets) gives a
// slice's summed loss (the student's, or the teacher's on its full vocabulary).
template <typename LossSumFn>
double validation_loss(const TrainConfig& c, const std::vector<Example>& validation, LossSumFn loss_sum) {
  BatchLoader loader(validation, c.batch_size, c.seq_len, c.seed, false);
  const int64_t batches = std::min<int64_t>(c.eval_batches, (loader.examples() + c.batch_size - 1) / c.batch_size);
  const int64_t rows = model_batch(c);
  std::vector<int32_t> in, tg;
  double sum = 0;
  int64_t count = 0;
  for (int64_t b = 0; b < batches; ++b) {
    loader.next(in, tg);
    for (int32_t t : tg) count += t >= 0 ? 1 : 0;
    for (int64_t row = 0; row < c.batch_size; row += rows)
      sum += loss_sum(in.data() + row * c.seq_len, tg.data() + row * c.seq_len);
  }
  return count > 0 ? sum / double(count) : std::nan("");
}

// Runs steps from run.state.step to config.steps (or stop_at_step); run.records gets every step's record. With R
// ranks, each global batch is R·batch_size rows read in the same order on every rank, and rank r
// trains on rows r·batch_size … (r+1)·batch_size − 1 of it: R ranks with batch b and accumulation k
// take the optimizer step of one process with batch R·b and accumulation k.
LoopResult run_step_loop(const LoopSetup& setup, OpenedRun& run, Objective& objective);

}  // namespace retort::train

#pragma once
// Dynamic loss scaling for fp16 training (memory.mixed_precision: fp16), by the rule of PyTorch's
// GradScaler: the loss, and so every gradient, is multiplied by a power of two S before the
// backward pass so that small gradients survive f16's range (smallest subnormal 6e-8); when the
// summed gradients are not finite (an f16 product overflowed past 65504), the step is skipped and
// S halved; after growth_interval good steps in a row S doubles. Unscaling divides by S exactly.
// The scale and its counters live in TrainerState, so a resumed run continues them.
#include <cstdint>

#include "train/checkpoint.h"

namespace retort::train {

class LossScaler {
 public:
  // enabled: fp16; a new run (state.loss_scale 0) starts at `initial`.
  LossScaler(bool enabled, double initial, int64_t growth_interval, TrainerState& state);
  bool enabled() const { return enabled_; }
  // What the step's losses are multiplied by before backward (1 when disabled).
  double scale() const { return enabled_ ? state_.loss_scale : 1.0; }
  // After the step's gradients are summed over ranks, with their norm (still scaled): whether the
  // step may be applied. Updates the scale for the next step either way. Throws when S has fallen
  // below 2^-24, where no scale keeps the gradients finite.
  bool admit_step(double scaled_grad_norm);

 private:
  bool enabled_;
  int64_t growth_interval_;
  TrainerState& state_;
};

}  // namespace retort::train

#include "train/loss_scaler.h"

#include <cmath>

#include "util/error.h"
#include "util/log.h"

namespace retort::train {

LossScaler::LossScaler(bool enabled, double initial, int64_t growth_interval, TrainerState& state)
    : enabled_(enabled), growth_interval_(growth_interval), state_(state) {
  if (enabled_ && state_.loss_scale == 0) state_.loss_scale = initial;
}

bool LossScaler::admit_step(double scaled_grad_norm) {
  if (!enabled_) return true;
  if (!std::isfinite(scaled_grad_norm)) {
    const double before = state_.loss_scale;
    state_.loss_scale /= 2;
    state_.loss_scale_good_steps = 0;
    ++state_.skipped_steps;
    require(state_.loss_scale >= std::ldexp(1.0, -24), ErrorKind::InvalidInput,
            "step {}: the gradients are not finite even at loss scale {} (fp16 overflows in the forward or backward "
            "pass at any scale); use memory.mixed_precision: bf16 (same range as f32) or none",
            state_.step + 1, before);
    spdlog::warn("step {}: fp16 gradients overflowed at loss scale {}; step skipped, scale now {}", state_.step + 1,
                 before, state_.loss_scale);
    return false;
  }
  if (++state_.loss_scale_good_steps == growth_interval_) {
    state_.loss_scale *= 2;
    state_.loss_scale_good_steps = 0;
  }
  return true;
}

}  // namespace retort::train

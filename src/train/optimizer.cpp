#include "train/optimizer.h"

#include <cmath>
#include <numbers>

#include "util/error.h"
#include "util/thread_pool.h"

namespace retort::train {

AdamW::AdamW(const ParameterLayout& layout, AdamWConfig config)
    : layout_(layout), config_(config), moments_(2 * layout.total, 0.0f) {}

template <typename T>
void AdamW::step(T* params, const T* grads, double lr) {
  ++step_;
  const double b1 = config_.beta1, b2 = config_.beta2;
  const double bias1 = 1.0 - std::pow(b1, double(step_));
  const double bias2_sqrt = std::sqrt(1.0 - std::pow(b2, double(step_)));
  const double step_size = lr / bias1;
  float* m = first_moment();
  float* v = second_moment();
  for (const ParameterInfo& tensor : layout_.tensors) {
    // PyTorch: θ ← θ·(1 − lr·λ), then θ ← θ − lr/(1−β1ᵗ) · m / (√v / √(1−β2ᵗ) + ε); in T
    // arithmetic (f32 as PyTorch computes it, vectorized), the constants in double rounded once.
    const auto decay = T(tensor.weight_decay ? 1.0 - lr * config_.weight_decay : 1.0);
    const auto beta1 = T(b1), beta2 = T(b2), one_minus_b1 = T(1.0 - b1), one_minus_b2 = T(1.0 - b2);
    const auto inv_bias2_sqrt = T(1.0 / bias2_sqrt), eps = T(config_.eps), step = T(step_size);
    thread_pool().parallel_for(tensor.count, 1 << 14, [&](size_t begin, size_t end) {
      for (size_t i = tensor.offset + begin; i < tensor.offset + end; ++i) {
        const T g = grads[i];
        const T mi = beta1 * T(m[i]) + one_minus_b1 * g;
        const T vi = beta2 * T(v[i]) + one_minus_b2 * g * g;
        m[i] = float(mi);
        v[i] = float(vi);
        params[i] = params[i] * decay - step * mi / (std::sqrt(vi) * inv_bias2_sqrt + eps);
      }
    });
  }
}

template void AdamW::step<float>(float*, const float*, double);
template void AdamW::step<double>(double*, const double*, double);

LrDecay parse_lr_decay(const std::string& name) {
  if (name == "constant") return LrDecay::Constant;
  if (name == "cosine") return LrDecay::Cosine;
  if (name == "linear") return LrDecay::Linear;
  fail(ErrorKind::InvalidInput, "unknown learning-rate decay '{}': expected constant, cosine or linear", name);
}

std::string_view lr_decay_name(LrDecay decay) {
  switch (decay) {
    case LrDecay::Constant: return "constant";
    case LrDecay::Cosine: return "cosine";
    case LrDecay::Linear: return "linear";
  }
  return "?";
}

double LrSchedule::at(int64_t step) const {
  if (step < warmup_steps) return lr * double(step + 1) / double(warmup_steps);
  if (decay == LrDecay::Constant) return lr;
  const int64_t span = std::max<int64_t>(1, total_steps - warmup_steps);
  const double progress = std::min(1.0, double(step - warmup_steps) / double(span));
  const double factor = decay == LrDecay::Cosine ? 0.5 * (1.0 + std::cos(std::numbers::pi * progress)) : 1.0 - progress;
  return min_lr + (lr - min_lr) * factor;
}

double global_grad_norm(const float* grads, size_t count) {
  // Fixed-size blocks summed in order: the same norm whatever the thread count.
  constexpr size_t kBlock = 1 << 14;
  const size_t blocks = (count + kBlock - 1) / kBlock;
  std::vector<double> partial(blocks, 0.0);
  thread_pool().parallel_for(blocks, 1, [&](size_t begin, size_t end) {
    for (size_t b = begin; b < end; ++b) {
      double s = 0;
      for (size_t i = b * kBlock; i < std::min(count, (b + 1) * kBlock); ++i) s += double(grads[i]) * grads[i];
      partial[b] = s;
    }
  });
  double total = 0;
  for (double s : partial) total += s;
  return std::sqrt(total);
}

double clip_grad_norm(float* grads, size_t count, double max_norm) {
  const double norm = global_grad_norm(grads, count);
  if (max_norm > 0 && norm > max_norm) {
    const float scale = float(max_norm / (norm + 1e-6));
    thread_pool().parallel_for(count, 1 << 14, [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i) grads[i] *= scale;
    });
  }
  return norm;
}

}  // namespace retort::train

#include "train/optimizer.h"

#include <cmath>
#include <numbers>

#include "util/error.h"
#include "util/thread_pool.h"

namespace retort::train {

AdamW::AdamW(const ParameterLayout& layout, AdamWConfig config)
    : layout_(layout), config_(config), moments_(2 * layout.total, 0.0f), shard_end_(layout.total) {}

void AdamW::keep_shard(size_t begin, size_t end) {
  require(begin <= end && end <= shard_end_ && shard_begin_ == 0 && shard_end_ == layout_.total, ErrorKind::Internal,
          "AdamW::keep_shard({}, {}) on an optimizer of {} parameters already sharded to [{}, {})", begin, end,
          layout_.total, shard_begin_, shard_end_);
  std::vector<float> kept(2 * (end - begin));
  std::copy(moments_.begin() + std::ptrdiff_t(begin), moments_.begin() + std::ptrdiff_t(end), kept.begin());
  std::copy(moments_.begin() + std::ptrdiff_t(layout_.total + begin),
            moments_.begin() + std::ptrdiff_t(layout_.total + end), kept.begin() + std::ptrdiff_t(end - begin));
  moments_ = std::move(kept);  // the unsharded allocation is released, not just shrunk
  shard_begin_ = begin;
  shard_end_ = end;
}

template <typename T>
void AdamW::step(T* params, const T* grads, double lr) {
  ++step_;
  const double b1 = config_.beta1, b2 = config_.beta2;
  const double bias1 = 1.0 - std::pow(b1, double(step_));
  const double bias2_sqrt = std::sqrt(1.0 - std::pow(b2, double(step_)));
  const double step_size = lr / bias1;
  float* m = first_moment();  // element i's moments at i − shard_begin_
  float* v = second_moment();
  for (const ParameterInfo& tensor : layout_.tensors) {
    const size_t first = std::max(tensor.offset, shard_begin_);
    const size_t last = std::min(tensor.offset + tensor.count, shard_end_);
    if (first >= last) continue;
    // PyTorch: θ ← θ·(1 − lr·λ), then θ ← θ − lr/(1−β1ᵗ) · m / (√v / √(1−β2ᵗ) + ε); in T
    // arithmetic (f32 as PyTorch computes it, vectorized), the constants in double rounded once.
    const auto decay = T(tensor.weight_decay ? 1.0 - lr * config_.weight_decay : 1.0);
    const auto beta1 = T(b1), beta2 = T(b2), one_minus_b1 = T(1.0 - b1), one_minus_b2 = T(1.0 - b2);
    const auto inv_bias2_sqrt = T(1.0 / bias2_sqrt), eps = T(config_.eps), step = T(step_size);
    thread_pool().parallel_for(last - first, 1 << 14, [&](size_t begin, size_t end) {
      for (size_t i = first + begin; i < first + end; ++i) {
        const T g = grads[i];
        const size_t j = i - shard_begin_;
        const T mi = beta1 * T(m[j]) + one_minus_b1 * g;
        const T vi = beta2 * T(v[j]) + one_minus_b2 * g * g;
        m[j] = float(mi);
        v[j] = float(vi);
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

void grad_block_squares(const float* grads, size_t count, size_t first_block, size_t last_block, double* out) {
  constexpr size_t kBlock = kGradNormBlock;
  thread_pool().parallel_for(last_block - first_block, 1, [&](size_t begin, size_t end) {
    for (size_t b = first_block + begin; b < first_block + end; ++b) {
      double s = 0;
      for (size_t i = b * kBlock; i < std::min(count, (b + 1) * kBlock); ++i) s += double(grads[i]) * grads[i];
      out[b - first_block] = s;
    }
  });
}

double global_grad_norm(const float* grads, size_t count) {
  const size_t blocks = (count + kGradNormBlock - 1) / kGradNormBlock;
  std::vector<double> partial(blocks, 0.0);
  grad_block_squares(grads, count, 0, blocks, partial.data());
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

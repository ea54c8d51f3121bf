#pragma once
// AdamW as PyTorch defines it (bias-corrected moments, decoupled weight decay applied to tensors
// with two or more dimensions only), learning-rate schedules and clipping by global norm. All of
// it works on the flat parameter/gradient allocations, so it is a loop over elements.
#include <cstdint>
#include <string>
#include <vector>

#include "train/parameters.h"

namespace retort::train {

struct AdamWConfig {
  double lr = 5e-5;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;
};

class AdamW {
 public:
  AdamW(const ParameterLayout& layout, AdamWConfig config);

  // One update with learning rate `lr` (the schedule's value for this step). float is training;
  // double (moments still stored in f32) checks the update rule against f64 references.
  template <typename T>
  void step(T* params, const T* grads, double lr);

  int64_t steps_taken() const { return step_; }
  const AdamWConfig& config() const { return config_; }
  // Both moments of the elements this optimizer updates, one allocation: [m (S) | v (S)], S =
  // shard_size() (every parameter unless keep_shard was called); views below.
  std::vector<float>& moments() { return moments_; }
  const std::vector<float>& moments() const { return moments_; }
  float* first_moment() { return moments_.data(); }
  float* second_moment() { return moments_.data() + shard_size(); }
  void set_steps_taken(int64_t steps) { step_ = steps; }

  // ZeRO-1: from now on update only elements [begin, end) of the flat buffers passed to step(),
  // keeping only their moments (the rest are freed). Called once, after any resume loaded them all.
  void keep_shard(size_t begin, size_t end);
  size_t shard_begin() const { return shard_begin_; }
  size_t shard_size() const { return shard_end_ - shard_begin_; }

 private:
  const ParameterLayout& layout_;
  AdamWConfig config_;
  std::vector<float> moments_;
  int64_t step_ = 0;
  size_t shard_begin_ = 0, shard_end_ = 0;
};

enum class LrDecay { Constant, Cosine, Linear };
LrDecay parse_lr_decay(const std::string& name);  // "constant", "cosine", "linear"
std::string_view lr_decay_name(LrDecay decay);

struct LrSchedule {
  double lr = 5e-5;
  int64_t warmup_steps = 0;  // linear from lr/warmup_steps up to lr
  int64_t total_steps = 1;   // decay reaches min_lr here
  LrDecay decay = LrDecay::Constant;
  double min_lr = 0;

  double at(int64_t step) const;  // step counts from 0
};

// Euclidean norm over all gradients (accumulated in double): sums of squares over fixed blocks of
// kGradNormBlock values, added in block order, so the same norm whatever the thread count or sharding.
constexpr size_t kGradNormBlock = size_t(1) << 14;
double global_grad_norm(const float* grads, size_t count);
// The sums of squares of blocks [first_block, last_block) of grads (count values), into out[0…].
void grad_block_squares(const float* grads, size_t count, size_t first_block, size_t last_block, double* out);
// Scales grads so their norm is at most max_norm (no-op when max_norm <= 0); returns the norm before.
double clip_grad_norm(float* grads, size_t count, double max_norm);

}  // namespace retort::train

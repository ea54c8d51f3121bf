#pragma once
// Online knowledge distillation: the teacher (a TrainModel run forward only, without its LM head)
// and the student run on the same batch; the student's gradient is the weighted sum of the hard
// cross-entropy, a soft-label divergence at temperature T (teacher logits computed chunk by chunk
// over positions), hidden-state losses through learned projections, and attention-map losses, all
// from train/kd_losses.h, fed into the student's backward through its BackwardHooks.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "train/distill_config.h"
#include "train/parameters.h"
#include "train/rank_group.h"
#include "train/train_model.h"

namespace retort {
class Tokenizer;
}

namespace retort::train {

// Refuses a teacher/student pair whose tokenizers differ (ids would mean different strings), and a
// teacher whose vocabulary is smaller than the student's; the error says which token differs.
void check_same_tokenizer(const Tokenizer& teacher, const Tokenizer& student, const std::string& teacher_name,
                          const std::string& student_name);
void check_vocabularies(const ModelConfig& teacher, const ModelConfig& student);

// Checks the layer maps against both models (hidden states 0..L, attention layers 0..L−1).
void check_layer_maps(const DistillConfig& config, const ModelConfig& student, const ModelConfig& teacher,
                      bool student_checkpointing);

struct LossWeights {
  double hard = 0, soft = 0, hidden = 0, attention = 0;
};

// Sums over the counted positions (attention: over sequences) of each unweighted term.
struct LossTerms {
  double hard = 0, soft = 0, hidden = 0, attention = 0;
  int64_t targets = 0, sequences = 0;
};

template <typename T>
class DistillObjective {
 public:
  // Checks the maps and dimensions; the projections start at zero (init_projections draws them).
  DistillObjective(const DistillConfig& config, TrainModel<T>& student, TrainModel<T>& teacher);

  void init_projections(uint64_t seed);
  const ParameterLayout& projection_layout() const { return proj_layout_; }
  T* projections() { return proj_.data(); }
  T* projection_grads() { return dproj_.data(); }

  // One micro-batch: both forwards and every term; with `backward`, adds into the student's and the
  // projections' gradients d(Σ w·term·scale)/dθ, where token terms use token_scale (1 / the step's
  // targets) and attention uses sequence_scale (1 / the step's sequences).
  LossTerms run(const int32_t* inputs, const int32_t* targets, const LossWeights& weights, double token_scale,
                double sequence_scale, bool backward);

  // The teacher's own cross-entropy on a batch (its full vocabulary), summed over targets.
  double teacher_loss(const int32_t* inputs, const int32_t* targets);

 private:
  // Teacher logits at `count` positions (indices into the batch's rows) into teacher_chunk_.
  void teacher_logits(const int64_t* rows, int64_t count);
  // Soft loss over the student's logit rows, chunk by chunk; with write_gradient, logits are
  // replaced by the gradient of (hard_w · CE + soft_w · soft) · token_scale.
  double soft_and_hard(T* logits, bool write_gradient, double hard_w, double soft_w, double token_scale);

  const DistillConfig& c_;
  TrainModel<T>& student_;
  TrainModel<T>& teacher_;
  ParameterLayout proj_layout_;
  std::vector<T> proj_, dproj_;
  std::vector<std::vector<T>> dhidden_;     // per hidden pair [N, Cs]
  std::vector<std::vector<T>> dattention_;  // per attention pair [B, Hs, T, T]
  std::vector<T> teacher_chunk_, teacher_rows_, grad_chunk_, topk_values_;
  std::vector<int32_t> topk_ids_;
};

struct DistillRunOptions {
  bool resume = false;
  RankGroup* ranks = &single_process();  // the data-parallel ranks (dist/data_parallel.h under mpirun)
  int64_t stop_at_step = 0;               // > 0: stop there, the schedule still over train.steps (step_loop.h)
};

struct DistillRunResult {
  int64_t steps = 0;
  double final_loss = 0;
  double val_loss = 0;          // the student's cross-entropy on the validation batches (NaN if none)
  double teacher_val_loss = 0;  // the teacher's, on the same batches
  std::string last_checkpoint;
};

DistillRunResult run_distillation(const DistillConfig& config, const std::vector<ConfigEntry>& entries,
                                  const DistillRunOptions& options);

}  // namespace retort::train

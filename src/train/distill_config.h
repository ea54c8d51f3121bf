#pragma once
// `retort distill CONFIG.yaml`: a training config (train_config.h: the student's model, data,
// optimizer, schedule, evaluation, checkpointing — parsed by the same code as `retort train`) plus
// the sections `teacher`, `student` (initialisation from the teacher), `distill` (losses, weights,
// layer maps) and `generate` (sequence-level KD). Unknown keys and wrong types are errors naming
// their path.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "train/kd_losses.h"
#include "train/train_config.h"

namespace retort::train {

enum class Weighting {
  Constant,     // the weights as given
  SoftToHard,   // soft-label terms fade out and the hard label fades in linearly over the run
  Normalized,   // each term divided by its running magnitude (EMA), so the weights say what share each has
};
Weighting parse_weighting(const std::string& name);  // constant, soft_to_hard, normalized
std::string_view weighting_name(Weighting w);

struct LayerPair {
  int64_t student = 0;
  int64_t teacher = 0;
};

struct StudentInit {
  bool from_teacher = false;          // build the student from the teacher's layers
  std::vector<int64_t> layers;        // teacher layers to keep, in order (empty with every > 0)
  int64_t every = 0;                  // keep teacher layers 0, every, 2·every, ...
  int64_t intermediate_size = 0;      // 0: keep the MLP width; else keep the strongest units
};

struct GenerateConfig {
  std::string prompts;                // JSONL with "prompt" per line
  std::string output;                 // JSONL of {"prompt", "response"}
  double temperature = 0.7;
  double top_p = 0.95;
  int64_t top_k = 0;
  int64_t max_tokens = 128;
  uint64_t seed = 0;
  bool chat_template = false;         // wrap the prompt in the tokenizer's chat template
};

struct DistillConfig {
  TrainConfig train;                  // the student's run (model, data, optimizer, checkpointing ...)
  std::string teacher_model;          // HF directory
  std::string teacher_tokenizer;      // default: teacher_model
  StudentInit student;

  // loss weights
  double w_hard = 0.5, w_soft = 0.5, w_hidden = 0.0, w_attention = 0.0;
  Weighting weighting = Weighting::Constant;
  double ema_decay = 0.9;             // for Weighting::Normalized
  SoftLossOptions soft{SoftLossKind::ForwardKL, 2.0, 0.5};
  int64_t top_k = 0;                  // > 0: the teacher's top-k logits only (forward KL)
  int64_t chunk_rows = 64;            // positions per chunk of teacher logits
  HiddenLossKind hidden_loss = HiddenLossKind::MSE;
  std::vector<LayerPair> hidden_map;  // hidden-state indices: 0 = embeddings, i = after layer i
  AttentionLossKind attention_loss = AttentionLossKind::KL;
  std::vector<LayerPair> attention_map;  // layer indices

  GenerateConfig generate;
};

// Parses YAML text; `source` names it in errors. Paths are resolved against base_dir.
DistillConfig parse_distill_config(const std::string& yaml_text, const std::string& source,
                                   const std::string& base_dir, std::vector<ConfigEntry>* entries = nullptr);
DistillConfig load_distill_config(const std::string& path, std::vector<ConfigEntry>* entries = nullptr);

}  // namespace retort::train

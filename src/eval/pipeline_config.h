#pragma once
// `retort pipeline CONFIG.yaml`: its settings. The teacher's training and the student's
// distillation are ordinary `retort train` / `retort distill` configs written inline under
// teacher.train and student.distill (their checkpoint directories and the student's teacher are
// filled in by the pipeline); the rest says what to quantize, how to evaluate, and where it all goes.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "quant/convert.h"

namespace retort {

struct PipelineClassifyConfig {
  std::string data;                  // CSV with a header
  std::string labels;                // JSON array of the candidate labels
  std::string text_column = "text";
  std::string label_column = "label";
  int64_t limit = 0;                 // > 0: an evenly spaced subset of this many rows
};

// BLEU and chrF of each model's greedy replies against held-out references (eval/reference_set.h).
struct PipelineBleuConfig {
  std::string data;        // JSONL of {"prompt", "reference"} (or "references")
  int max_tokens = 64;     // per reply, which ends at its first newline
};

struct PipelineConfig {
  std::string source;                // the config file, for messages
  std::string fingerprint;           // of the settings as parsed (comments and layout do not count)
  std::string base_dir;              // relative paths (here and in the inline configs) resolve against it
  std::string dir;                   // everything the pipeline writes
  std::string teacher_model;         // a trained teacher (HF directory) ...
  std::string teacher_train_yaml;    // ... or a `retort train` config that trains one
  std::string student_distill_yaml;  // a `retort distill` config (teacher.model, checkpointing.dir filled in)
  bool baseline = true;              // also train the same student on the hard labels alone
  std::vector<QuantRecipe> quantize{QuantRecipe::Q8_0, QuantRecipe::Q4_K_M};
  // evaluation
  std::string eval_text;             // held-out text for perplexity, KL and agreement
  int64_t context = 128;
  int64_t chunks = 8;                // windows of eval_text (0: all)
  int64_t prompt_tokens = 64;        // speed: a prefill of this many tokens ...
  int64_t decode_tokens = 32;        // ... then this many greedy steps
  int threads = 0;                   // 0: all hardware threads
  std::optional<PipelineClassifyConfig> classify;
  std::optional<PipelineBleuConfig> bleu;
  int serve_port = 8080;             // for the `retort serve` command the report suggests
};

// Parses YAML text; unknown keys and wrong types are errors naming their path.
PipelineConfig parse_pipeline_config(const std::string& yaml_text, const std::string& source,
                                     const std::string& base_dir);
PipelineConfig load_pipeline_config(const std::string& path);

}  // namespace retort

#pragma once
// `retort train CONFIG.yaml`: the run's settings, in the shape of the guide's train_config.yaml
// (optimizer: {type: AdamW, lr, weight_decay}, grad_accum_steps, distributed: {...}) plus model,
// data, steps, evaluation and checkpointing. Unknown keys and wrong types are errors naming their
// path; every setting is listed with where it came from (file or default).
#include <cstdint>
#include <string>
#include <vector>

#include "train/data.h"
#include "train/optimizer.h"

namespace retort::train {

struct TrainConfig {
  // model
  std::string model_init;       // HF directory to start from ...
  std::string model_config;     // ... or a config.json to initialise randomly
  std::string tokenizer;        // tokenizer.json or its directory; default: model_init
  double init_stddev = 0.02;
  // data
  std::string train_file;
  std::string validation_file;  // optional; else val_fraction of train_file
  DataFormat format = DataFormat::Tokens;
  double val_fraction = 0.0;
  bool shuffle = true;
  std::string chat_template;
  // loop
  int64_t batch_size = 4;
  int64_t seq_len = 256;
  int64_t steps = 100;
  int64_t grad_accum_steps = 1;
  uint64_t seed = 0;
  int threads = 0;              // 0: all hardware threads
  int64_t log_every = 1;
  // optimizer and schedule
  std::string optimizer_type = "AdamW";
  AdamWConfig adamw{5e-5, 0.9, 0.999, 1e-8, 0.01};
  double grad_clip = 1.0;       // ≤ 0: no clipping
  int64_t warmup_steps = 0;
  LrDecay decay = LrDecay::Cosine;
  double min_lr = 0.0;
  // evaluation
  int64_t eval_every = 0;       // 0: only at the end (when there is validation data)
  int64_t eval_batches = 8;
  // checkpointing
  std::string output_dir = "runs/train";
  int64_t save_every = 0;       // 0: only at the end
  int64_t keep_last = 3;
  // memory
  bool activation_checkpointing = false;
  std::string mixed_precision = "none";  // none | bf16 | fp16 (with dynamic loss scaling)
  double loss_scale_initial = 65536;     // fp16: the first loss scale (2^16, as PyTorch's GradScaler)
  int64_t loss_scale_growth_interval = 2000;  // fp16: the scale doubles after this many good steps
  // distributed: data parallel over MPI ranks (mpirun -np device_num; dist/data_parallel.h)
  bool distributed_enable = false;
  std::string distributed_strategy = "collective";  // collective (= data_parallel): gradients allreduced
  int64_t device_num = 1;                           // must equal the MPI world size
  std::string allreduce = "flat";                   // flat | hierarchical (inside nodes, then across)
  int64_t zero_stage = 0;                           // 0 | 1 (ZeRO-1: Adam moments sharded over the ranks)
  // > 0: the model's gradients summed in buckets of this many MiB on a communication thread during the
  // backward of each step's last micro-batch (PyTorch DDP's bucket_cap_mb); 0: one sum after it.
  double bucket_mb = 25;
  // Gradients taken one sequence at a time and summed in f64 (over sequences, micro-batches and
  // ranks), rounded to f32 once per step: the same weights on any number of ranks (see step_loop.h).
  bool reproducible = false;
};

// Sequences per forward and backward of the models: one in a reproducible run, else batch_size.
inline int64_t model_batch(const TrainConfig& c) { return c.reproducible ? 1 : c.batch_size; }

struct ConfigEntry {
  std::string path;   // e.g. "optimizer.lr"
  std::string value;
  bool from_default;
};

// Parses YAML text; `source` names it in errors. Paths in the file are resolved against base_dir.
TrainConfig parse_train_config(const std::string& yaml_text, const std::string& source, const std::string& base_dir,
                               std::vector<ConfigEntry>* entries = nullptr);
TrainConfig load_train_config(const std::string& path, std::vector<ConfigEntry>* entries = nullptr);

// A config file's text and the directory its relative paths resolve against ("." for a bare file
// name); `what` ("training", "distillation") names the kind of config in the error.
struct ConfigFileText {
  std::string text;
  std::string base_dir;
};
ConfigFileText read_config_file(const std::string& path, const std::string& what);

}  // namespace retort::train

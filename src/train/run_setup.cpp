#include "train/run_setup.h"

#include <cblas.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "io/safetensors.h"
#include "util/error.h"
#include "util/log.h"
#include "util/output_path.h"
#include "util/thread_pool.h"

namespace retort::train {

namespace fs = std::filesystem;

namespace {

// Weights ~ N(0, σ²), norms 1, biases 0, as transformers initialises them; our own generator so the
// same seed gives the same model everywhere.
void random_init(const ParameterLayout& layout, float* params, uint64_t seed, double stddev) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, stddev);
  for (const auto& t : layout.tensors) {
    const bool norm = t.role == TensorRole::AttnNorm || t.role == TensorRole::MlpNorm || t.role == TensorRole::OutputNorm;
    const bool bias = t.role == TensorRole::Bq || t.role == TensorRole::Bk || t.role == TensorRole::Bv;
    for (size_t i = 0; i < t.count; ++i) params[t.offset + i] = norm ? 1.0f : bias ? 0.0f : float(normal(rng));
  }
}

}  // namespace

void set_run_threads(const TrainConfig& c) {
  set_thread_count(c.threads > 0 ? c.threads : default_thread_count());
  openblas_set_num_threads(1);
}

std::string settings_text(const std::vector<ConfigEntry>& entries) {
  std::string text;
  for (const auto& e : entries) text += fmt::format("{} = {}{}\n", e.path, e.value, e.from_default ? "  (default)" : "");
  return text;
}

TrainModelOptions train_model_options(const TrainConfig& c) {
  TrainModelOptions options;
  options.activation_checkpointing = c.activation_checkpointing;
  options.matmul_precision = c.mixed_precision == "bf16"   ? MatmulPrecision::bf16
                             : c.mixed_precision == "fp16" ? MatmulPrecision::f16
                                                           : MatmulPrecision::f32;
  return options;
}

std::string tokenizer_dir_of(const std::string& path) {
  if (path.empty()) return path;
  return fs::is_regular_file(path) ? fs::path(path).parent_path().string() : path;
}

std::string file_fingerprint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  uint64_t hash = 1469598103934665603ull;
  char c;
  while (in.get(c)) hash = (hash ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return fmt::format("{:016x}", hash);
}

static DataSets read_data_sets(const TrainConfig& c, const Tokenizer* tokenizer, const std::string& tokenizer_fingerprint,
                               int64_t vocab_size) {
  DataOptions options;
  options.format = c.format;
  options.seq_len = c.seq_len;
  options.val_fraction = c.validation_file.empty() ? c.val_fraction : 0.0;
  options.seed = c.seed;
  options.chat_template = c.chat_template;
  options.cache_dir = (fs::path(c.output_dir) / "token-cache").string();
  options.tokenizer_fingerprint = tokenizer_fingerprint;
  DataSets sets;
  split_examples(load_examples(c.train_file, options, tokenizer, vocab_size), options, sets.train, sets.validation);
  if (!c.validation_file.empty()) sets.validation = load_examples(c.validation_file, options, tokenizer, vocab_size);
  require(!sets.train.empty(), ErrorKind::InvalidInput, "{}: nothing left to train on after the validation split",
          c.train_file);
  return sets;
}

DataSets load_data_sets(const TrainConfig& c, const Tokenizer* tokenizer, const std::string& tokenizer_fingerprint,
                        int64_t vocab_size, RankGroup& ranks) {
  // Rank 0 tokenizes and writes the cache; the others then read it instead of racing to write it.
  DataSets sets;
  if (ranks.writes()) sets = read_data_sets(c, tokenizer, tokenizer_fingerprint, vocab_size);
  ranks.barrier();
  return ranks.writes() ? sets : read_data_sets(c, tokenizer, tokenizer_fingerprint, vocab_size);
}

void refuse_used_run_directory(const TrainConfig& c, bool resume, const std::vector<std::string>& extra_inputs) {
  std::vector<std::string> inputs{c.model_init, c.tokenizer, c.train_file, c.validation_file};
  inputs.insert(inputs.end(), extra_inputs.begin(), extra_inputs.end());
  std::erase_if(inputs, [](const std::string& path) { return path.empty(); });
  check_output_directory(c.output_dir, ExistingContents::Allow, inputs, "checkpointing.dir");
  require(resume || !latest_checkpoint(c.output_dir).has_value(), ErrorKind::InvalidInput,
          "'{}' already holds checkpoints of a run: pass --resume to continue it, or choose another checkpointing.dir",
          c.output_dir);
}

OpenedRun open_or_resume_run(const TrainConfig& c, bool resume, const ModelConfig& config,
                             const ParameterLayout& layout, float* params, AdamW& optimizer, const RankGroup& ranks) {
  OpenedRun run;
  run.state.seed = c.seed;
  run.state.rng_state = c.seed;
  run.state.ranks = ranks.ranks();
  run.metrics_path = (fs::path(c.output_dir) / "metrics.jsonl").string();
  run.report_path = (fs::path(c.output_dir) / "report.html").string();
  if (resume) {
    const auto latest = latest_checkpoint(c.output_dir);
    require(latest.has_value(), ErrorKind::NotFound, "--resume: no checkpoint in '{}' to resume from", c.output_dir);
    run.state = load_checkpoint(*latest, config, layout, params, optimizer.moments().data());
    // Each rank's batch is batch_size rows of a global batch of ranks × batch_size: on another
    // number of ranks the data order and the optimizer steps would not continue the run's.
    require(run.state.ranks == ranks.ranks(), ErrorKind::InvalidInput,
            "--resume: {} was written by a run on {} rank(s), but this run has {}; resume on {} rank(s) "
            "(mpirun -np {}), or start a new run in another checkpointing.dir",
            *latest, run.state.ranks, ranks.ranks(), run.state.ranks, run.state.ranks);
    optimizer.set_steps_taken(run.state.step - run.state.skipped_steps);
    run.records = read_metrics(run.metrics_path, run.state.step);
    run.resumed_from = *latest;
    spdlog::info("resuming from {} (step {})", *latest, run.state.step);
  } else {
    refuse_used_run_directory(c, resume);
    if (!c.model_init.empty()) load_parameters(layout, *Checkpoint::open_directory(c.model_init), params);
    else random_init(layout, params, c.seed, c.init_stddev);
  }
  if (ranks.writes()) {
    if (const int stale = remove_stale_checkpoint_temps(c.output_dir); stale > 0)
      spdlog::info("removed {} unfinished checkpoint director{} of an interrupted run", stale, stale == 1 ? "y" : "ies");
    fs::create_directories(c.output_dir);
    write_metrics(run.metrics_path, run.records);
  }
  return run;
}

}  // namespace retort::train

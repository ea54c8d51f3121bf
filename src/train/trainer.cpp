#include "train/trainer.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "io/model_config.h"
#include "io/safetensors.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpoint.h"
#include "train/report.h"
#include "train/run_setup.h"
#include "train/step_loop.h"
#include "train/train_model.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/log.h"
#include "util/thread_pool.h"

namespace retort::train {

namespace fs = std::filesystem;

namespace {

std::string duration_text(double seconds) {
  const auto s = static_cast<int64_t>(seconds);
  return fmt::format("{}:{:02d}:{:02d}", s / 3600, (s / 60) % 60, s % 60);
}

// Cross-entropy on the model's own predictions: the whole objective of `retort train`.
class CrossEntropyObjective final : public Objective {
 public:
  CrossEntropyObjective(TrainModel<float>& model, AdamW& optimizer, const std::vector<Example>& validation,
                        const TrainConfig& c)
      : model_(model), optimizer_(optimizer), validation_(validation), c_(c) {}

  const char* activity() const override { return "training"; }
  const char* nonfinite_advice() const override { return "Lower optimizer.lr or check the data"; }
  std::vector<TrainedBuffer> trained_buffers() override {
    return {{model_.params(), model_.grads(), model_.parameter_count(), &optimizer_}};
  }
  void begin_step(int64_t) override {
    model_.zero_grad();
    loss_sum_ = 0;
  }
  void set_gradient_ready(std::function<void(size_t, size_t)> ready) override {
    model_.set_gradient_ready(std::move(ready));
  }
  void accumulate(const int32_t* inputs, const int32_t* targets, const StepScales& scales) override {
    loss_sum_ += model_.forward(inputs, targets).sum;
    if (scales.token > 0) model_.backward(scales.token * scales.loss_scale);
  }
  std::vector<double> step_sums() const override { return {loss_sum_}; }
  double step_loss(const std::vector<double>& sums, const StepScales& scales) override {
    return scales.targets > 0 ? sums[0] / double(scales.targets) : 0.0;
  }
  void end_step(const StepRecord&, bool) override {}
  double validate(int64_t step) override {
    const double loss = validation_loss(c_, validation_, [&](const int32_t* in, const int32_t* tg) {
      return model_.forward(in, tg).sum;
    });
    spdlog::info("step {}: validation loss {:.4f}", step, loss);
    return loss;
  }
  void log_step(const StepRecord& r, int64_t total_steps, double eta_seconds) const override {
    spdlog::info("step {}/{} | loss {:.4f} | lr {:.3e} | grad norm {:.3f} | {:.0f} tok/s | ETA {}", r.step, total_steps,
                 r.loss, r.lr, r.grad_norm, r.tokens_per_second, duration_text(eta_seconds));
  }
  void save_state(const std::string&) const override {}

 private:
  TrainModel<float>& model_;
  AdamW& optimizer_;
  const std::vector<Example>& validation_;
  const TrainConfig& c_;
  double loss_sum_ = 0;
};

}  // namespace

TrainRunResult run_training(const TrainConfig& c, const std::vector<ConfigEntry>& entries,
                            const TrainRunOptions& run_options) {
  set_run_threads(c);
  spdlog::info("training settings (file values and defaults):\n{}", settings_text(entries));
  // Before anything is written there (the token cache is, before the run opens).
  refuse_used_run_directory(c, run_options.resume);

  const std::string model_dir = c.model_init;
  ModelConfig config = load_hf_config(model_dir.empty() ? c.model_config : (fs::path(model_dir) / "config.json").string());
  TrainModel<float> model(config, model_batch(c), c.seq_len, train_model_options(c));
  const ParameterLayout& layout = model.layout();
  AdamW optimizer(layout, c.adamw);

  std::string tokenizer_dir = tokenizer_dir_of(c.tokenizer.empty() ? model_dir : c.tokenizer);
  const std::string tokenizer_json = tokenizer_dir.empty() ? "" : (fs::path(tokenizer_dir) / "tokenizer.json").string();
  std::unique_ptr<Tokenizer> tokenizer;
  if (!tokenizer_json.empty() && fs::exists(tokenizer_json)) tokenizer = Tokenizer::load(tokenizer_dir);
  else tokenizer_dir.clear();
  RankGroup& ranks = *run_options.ranks;
  const DataSets data = load_data_sets(c, tokenizer.get(), tokenizer ? file_fingerprint(tokenizer_json) : "",
                                       config.vocab_size, ranks);
  spdlog::info("data: {} training and {} validation examples ({})", data.train.size(), data.validation.size(),
               data_format_name(c.format));

  OpenedRun run = open_or_resume_run(c, run_options.resume, config, layout, model.params(), optimizer, ranks);
  CrossEntropyObjective objective(model, optimizer, data.validation, c);
  const LoopSetup setup{&c,      &entries,   fmt::format("retort train: {}", fs::path(c.output_dir).filename().string()),
                        &config, &layout,    model.params(),
                        &optimizer, tokenizer_dir, &data.train,
                        !data.validation.empty(), &ranks};
  const LoopResult result = run_step_loop(setup, run, objective);
  return {result.steps, result.final_loss, result.last_checkpoint};
}

}  // namespace retort::train

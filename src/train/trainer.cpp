#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "io/model_config.h"
#include "io/safetensors.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpoint.h"
#include "train/report.h"
#include "train/run_setup.h"
#include "train/train_model.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/log.h"
#include "util/thread_pool.h"

namespace retort::train {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

std::string duration_text(double seconds) {
  const auto s = static_cast<int64_t>(seconds);
  return fmt::format("{}:{:02d}:{:02d}", s / 3600, (s / 60) % 60, s % 60);
}

double evaluate(TrainModel<float>& model, const std::vector<Example>& validation, const TrainConfig& c) {
  BatchLoader loader(validation, c.batch_size, c.seq_len, c.seed, false);
  const int64_t batches =
      std::min<int64_t>(c.eval_batches, (loader.examples() + c.batch_size - 1) / c.batch_size);
  std::vector<int32_t> inputs, targets;
  LossSum total;
  for (int64_t b = 0; b < batches; ++b) {
    loader.next(inputs, targets);
    LossSum l = model.forward(inputs.data(), targets.data());
    total.sum += l.sum;
    total.targets += l.targets;
  }
  return total.targets > 0 ? total.sum / double(total.targets) : std::nan("");
}

}  // namespace

TrainRunResult run_training(const TrainConfig& c, const std::vector<ConfigEntry>& entries,
                            const TrainRunOptions& run_options) {
  set_run_threads(c);
  spdlog::info("training settings (file values and defaults):\n{}", settings_text(entries));

  const std::string model_dir = c.model_init;
  ModelConfig config = load_hf_config(model_dir.empty() ? c.model_config : (fs::path(model_dir) / "config.json").string());
  TrainModel<float> model(config, c.batch_size, c.seq_len, train_model_options(c));
  const ParameterLayout& layout = model.layout();
  AdamW optimizer(layout, c.adamw);

  std::string tokenizer_dir = tokenizer_dir_of(c.tokenizer.empty() ? model_dir : c.tokenizer);
  const std::string tokenizer_json = tokenizer_dir.empty() ? "" : (fs::path(tokenizer_dir) / "tokenizer.json").string();
  std::unique_ptr<Tokenizer> tokenizer;
  if (!tokenizer_json.empty() && fs::exists(tokenizer_json)) tokenizer = Tokenizer::load(tokenizer_dir);
  else tokenizer_dir.clear();
  const DataSets data =
      load_data_sets(c, tokenizer.get(), tokenizer ? file_fingerprint(tokenizer_json) : "", config.vocab_size);
  spdlog::info("data: {} training and {} validation examples ({})", data.train.size(), data.validation.size(),
               data_format_name(c.format));

  OpenedRun run = open_or_resume_run(c, run_options.resume, config, layout, model.params(), optimizer);
  TrainerState& state = run.state;
  std::vector<StepRecord>& records = run.records;
  std::string last_checkpoint = run.resumed_from;
  std::ofstream metrics(run.metrics_path, std::ios::app);

  BatchLoader loader(data.train, c.batch_size, c.seq_len, c.seed, c.shuffle);
  loader.seek(state.data);
  const LrSchedule schedule{c.adamw.lr, c.warmup_steps, c.steps, c.decay, c.min_lr};
  const std::string title = fmt::format("retort train: {}", fs::path(c.output_dir).filename().string());
  auto refresh_report = [&] {
    write_file_atomically(run.report_path, render_report_html(title, records, settings_text(entries)));
  };
  auto checkpoint = [&] {
    state.data = loader.position();
    last_checkpoint = save_checkpoint(c.output_dir,
                                      {&config, &layout, model.params(), optimizer.moments().data(), state, tokenizer_dir},
                                      c.keep_last);
    spdlog::info("checkpoint {}", last_checkpoint);
  };
  auto stop_on_nonfinite = [&](double value, const char* what) {
    require(std::isfinite(value), ErrorKind::InvalidInput,
            "step {}: the {} is {}; training stopped. Last good checkpoint: {}. Lower optimizer.lr or check the data",
            state.step + 1, what, value, last_checkpoint.empty() ? std::string("none") : last_checkpoint);
  };

  std::vector<std::vector<int32_t>> inputs(static_cast<size_t>(c.grad_accum_steps)), targets(inputs.size());
  const auto run_start = Clock::now();
  const int64_t first_step = state.step;
  double last_loss = 0;
  while (state.step < c.steps) {
    const auto step_start = Clock::now();
    // Every micro-batch's targets are known before any backward, so each is scaled by the whole
    // step's target count: k accumulated micro-batches give exactly the gradient of one big batch.
    int64_t step_targets = 0;
    for (size_t m = 0; m < inputs.size(); ++m) {
      loader.next(inputs[m], targets[m]);
      for (int32_t t : targets[m]) step_targets += t >= 0 ? 1 : 0;
    }
    model.zero_grad();
    double loss_sum = 0;
    for (size_t m = 0; m < inputs.size(); ++m) {
      loss_sum += model.forward(inputs[m].data(), targets[m].data()).sum;
      stop_on_nonfinite(loss_sum, "loss");
      if (step_targets > 0) model.backward(1.0 / double(step_targets));
    }
    const double loss = step_targets > 0 ? loss_sum / double(step_targets) : 0.0;
    const double grad_norm = clip_grad_norm(model.grads(), model.parameter_count(), c.grad_clip);
    stop_on_nonfinite(grad_norm, "gradient norm");
    const double lr = schedule.at(state.step);
    optimizer.step(model.params(), model.grads(), lr);
    ++state.step;
    state.tokens_seen += c.grad_accum_steps * c.batch_size * c.seq_len;
    last_loss = loss;

    const double seconds = std::chrono::duration<double>(Clock::now() - step_start).count();
    StepRecord record{state.step, loss, lr, grad_norm, double(c.grad_accum_steps * c.batch_size * c.seq_len) / seconds, std::nullopt};
    const bool last = state.step == c.steps;
    if (!data.validation.empty() && ((c.eval_every > 0 && state.step % c.eval_every == 0) || last)) {
      record.val_loss = evaluate(model, data.validation, c);
      spdlog::info("step {}: validation loss {:.4f}", state.step, *record.val_loss);
    }
    records.push_back(record);
    metrics << metrics_json_line(record) << std::endl;
    if (state.step % c.log_every == 0 || last) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - run_start).count();
      const double eta = elapsed / double(state.step - first_step) * double(c.steps - state.step);
      spdlog::info("step {}/{} | loss {:.4f} | lr {:.3e} | grad norm {:.3f} | {:.0f} tok/s | ETA {}", state.step, c.steps,
                   loss, lr, grad_norm, record.tokens_per_second, duration_text(eta));
    }
    if ((c.save_every > 0 && state.step % c.save_every == 0) || last) checkpoint();
    if (record.val_loss || (c.save_every > 0 && state.step % c.save_every == 0) || state.step % 50 == 0 || last)
      refresh_report();
  }
  refresh_report();
  return {state.step, last_loss, last_checkpoint};
}

}  // namespace retort::train

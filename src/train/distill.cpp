// The distillation loop behind `retort distill CONFIG.yaml`: the student's model, data,
// optimizer, schedule, checkpoints, metrics and report are those of `retort train` (the same
// functions from train/); what is added is the teacher, the combined loss with its weighting
// schedule, and the hidden-state projections (trained with their own AdamW state, saved beside
// each checkpoint as distill_state.safetensors).
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "io/safetensors.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpoint.h"
#include "train/distill.h"
#include "train/report.h"
#include "train/run_setup.h"
#include "train/student_init.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/log.h"
#include "util/thread_pool.h"

namespace retort::train {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kDistillState = "distill_state.safetensors";

// Weights for this step: the configured ones, faded soft → hard, or normalised by each term's
// running magnitude (an EMA of its per-target mean, updated after each step).
LossWeights step_weights(const DistillConfig& c, int64_t step, const LossWeights& ema) {
  LossWeights w{c.w_hard, c.w_soft, c.w_hidden, c.w_attention};
  if (c.weighting == Weighting::SoftToHard) {
    const double a = double(step) / double(std::max<int64_t>(c.train.steps - 1, 1));
    w.hard *= a;
    w.soft *= 1 - a;
    w.hidden *= 1 - a;
    w.attention *= 1 - a;
  } else if (c.weighting == Weighting::Normalized) {
    auto norm = [](double weight, double magnitude) { return magnitude > 0 ? weight / std::max(magnitude, 1e-6) : weight; };
    w = {norm(w.hard, ema.hard), norm(w.soft, ema.soft), norm(w.hidden, ema.hidden), norm(w.attention, ema.attention)};
  }
  return w;
}

void save_distill_state(const std::string& dir, const ParameterLayout& layout, const std::vector<float>& params,
                        const std::vector<float>& moments, const LossWeights& ema) {
  std::vector<TensorToWrite> tensors;
  auto add = [&](const std::string& name, const float* data, const ParameterInfo& p) {
    tensors.push_back({name, DType::F32, p.shape,
                       {reinterpret_cast<const uint8_t*>(data + p.offset), p.count * sizeof(float)}});
  };
  for (const auto& p : layout.tensors) {
    add(p.name, params.data(), p);
    add("exp_avg." + p.name, moments.data(), p);
    add("exp_avg_sq." + p.name, moments.data() + layout.total, p);
  }
  const nlohmann::json meta{{"ema_hard", ema.hard}, {"ema_soft", ema.soft}, {"ema_hidden", ema.hidden},
                            {"ema_attention", ema.attention}};
  write_safetensors((fs::path(dir) / kDistillState).string(), tensors, {{"distill", meta.dump()}});
}

LossWeights load_distill_state(const std::string& dir, const ParameterLayout& layout, std::vector<float>& params,
                               std::vector<float>& moments) {
  const std::string path = (fs::path(dir) / kDistillState).string();
  require(fs::exists(path), ErrorKind::NotFound, "{}: missing; this checkpoint was not written by retort distill", path);
  const SafetensorsFile file(path);
  auto read = [&](const std::string& name, float* dst, const ParameterInfo& p) {
    const auto& all = file.tensors();
    auto it = std::find_if(all.begin(), all.end(), [&](const TensorView& t) { return t.name == name; });
    require(it != all.end(), ErrorKind::InvalidInput,
            "{}: no tensor '{}'; the projections in the config do not match this checkpoint's", path, name);
    require(it->shape == p.shape && it->dtype == DType::F32, ErrorKind::InvalidInput,
            "{}: projection '{}' is [{}] but the config needs [{}] (teacher hidden × student hidden): the "
            "projection dimensions do not match these models", path, name, fmt::join(it->shape, ", "),
            fmt::join(p.shape, ", "));
    std::memcpy(dst + p.offset, it->data, p.count * sizeof(float));
  };
  for (const auto& p : layout.tensors) {
    read(p.name, params.data(), p);
    read("exp_avg." + p.name, moments.data(), p);
    read("exp_avg_sq." + p.name, moments.data() + layout.total, p);
  }
  const auto found = file.metadata().find("distill");
  require(found != file.metadata().end(), ErrorKind::InvalidInput, "{}: no 'distill' metadata", path);
  const auto meta = nlohmann::json::parse(found->second);
  return {meta["ema_hard"], meta["ema_soft"], meta["ema_hidden"], meta["ema_attention"]};
}

// Rewrites the per-step term log without the lines of steps after `last_step` (those a killed run
// logged past its last checkpoint, or a stale log in a fresh run's directory).
void keep_logged_terms(const std::string& path, int64_t last_step) {
  if (!fs::exists(path)) return;
  std::ifstream in(path);
  std::string line, kept;
  bool changed = false;
  while (std::getline(in, line)) {
    const auto row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const bool keep = row.is_object() && row.contains("step") && row["step"].is_number_integer() &&
                      row["step"].get<int64_t>() <= last_step;
    if (keep) {
      kept += line + "\n";
    } else {
      changed = true;
    }
  }
  if (changed) write_file_atomically(path, kept);
}

}  // namespace

DistillRunResult run_distillation(const DistillConfig& dc, const std::vector<ConfigEntry>& entries,
                                  const DistillRunOptions& run_options) {
  const TrainConfig& c = dc.train;
  set_run_threads(c);
  spdlog::info("distillation settings (file values and defaults):\n{}", settings_text(entries));

  // Checked before anything is written, so a mistaken fresh run cannot overwrite the run's student-init.
  refuse_used_run_directory(c, run_options.resume);
  if (dc.student.from_teacher && !run_options.resume) write_student_from_teacher(dc.teacher_model, dc.student, c.model_init);
  const std::string model_dir = c.model_init;
  const ModelConfig sconf =
      load_hf_config(model_dir.empty() ? c.model_config : (fs::path(model_dir) / "config.json").string());
  const ModelConfig tconf = load_hf_config((fs::path(dc.teacher_model) / "config.json").string());
  check_vocabularies(tconf, sconf);
  check_layer_maps(dc, sconf, tconf, c.activation_checkpointing);

  const std::string student_tok_dir = tokenizer_dir_of(c.tokenizer.empty() ? model_dir : c.tokenizer);
  const std::string teacher_tok_dir = tokenizer_dir_of(dc.teacher_tokenizer);
  require(fs::exists(fs::path(student_tok_dir) / "tokenizer.json") && fs::exists(fs::path(teacher_tok_dir) / "tokenizer.json"),
          ErrorKind::NotFound,
          "distillation needs both tokenizers to check that they are the same: no tokenizer.json in '{}' (student) "
          "or '{}' (teacher); set model.tokenizer / teacher.tokenizer", student_tok_dir, teacher_tok_dir);
  std::unique_ptr<Tokenizer> tokenizer = Tokenizer::load(student_tok_dir);
  check_same_tokenizer(*Tokenizer::load(teacher_tok_dir), *tokenizer, teacher_tok_dir, student_tok_dir);

  // memory.mixed_precision applies to the student's products; the teacher's forward stays f32.
  TrainModel<float> student(sconf, c.batch_size, c.seq_len, train_model_options(c));
  TrainModel<float> teacher(tconf, c.batch_size, c.seq_len, {false, false});
  load_parameters(teacher.layout(), *Checkpoint::open_directory(dc.teacher_model), teacher.params());
  DistillObjective<float> objective(dc, student, teacher);
  const ParameterLayout& layout = student.layout();
  AdamW optimizer(layout, c.adamw);
  AdamW proj_optimizer(objective.projection_layout(), c.adamw);
  std::vector<float> proj_params(objective.projections(), objective.projections() + objective.projection_layout().total);

  // Data exactly as `retort train` reads it (same loaders, split, cache).
  const std::string fingerprint = file_fingerprint((fs::path(student_tok_dir) / "tokenizer.json").string());
  const DataSets data = load_data_sets(c, tokenizer.get(), fingerprint, sconf.vocab_size);
  const std::vector<Example>& train_set = data.train;
  const std::vector<Example>& validation = data.validation;
  spdlog::info("data: {} training and {} validation examples; teacher {} layers × {} hidden, student {} layers × {}",
               train_set.size(), validation.size(), tconf.num_layers, tconf.hidden_size, sconf.num_layers,
               sconf.hidden_size);

  OpenedRun run = open_or_resume_run(c, run_options.resume, sconf, layout, student.params(), optimizer);
  TrainerState& state = run.state;
  std::vector<StepRecord>& records = run.records;
  std::string last_checkpoint = run.resumed_from;
  const std::string metrics_path = run.metrics_path;
  const std::string terms_path = (fs::path(c.output_dir) / "distill_metrics.jsonl").string();
  LossWeights ema;
  if (!run.resumed_from.empty()) {
    ema = load_distill_state(run.resumed_from, objective.projection_layout(), proj_params, proj_optimizer.moments());
    proj_optimizer.set_steps_taken(state.step);
  } else {
    objective.init_projections(c.seed);
    std::copy_n(objective.projections(), proj_params.size(), proj_params.data());
  }
  keep_logged_terms(terms_path, state.step);  // a resumed run redoes the steps after its checkpoint
  std::ofstream metrics(metrics_path, std::ios::app), terms_log(terms_path, std::ios::app);

  // Validation: the student's (and once, the teacher's) cross-entropy on the same fixed batches.
  auto validate = [&](bool of_teacher) {
    BatchLoader loader(validation, c.batch_size, c.seq_len, c.seed, false);
    const int64_t batches = std::min<int64_t>(c.eval_batches, (loader.examples() + c.batch_size - 1) / c.batch_size);
    std::vector<int32_t> in, tg;
    double sum = 0;
    int64_t count = 0;
    for (int64_t b = 0; b < batches; ++b) {
      loader.next(in, tg);
      for (int32_t t : tg) count += t >= 0 ? 1 : 0;
      sum += of_teacher ? objective.teacher_loss(in.data(), tg.data()) : student.forward(in.data(), tg.data()).sum;
    }
    return count > 0 ? sum / double(count) : std::nan("");
  };
  DistillRunResult result;
  result.teacher_val_loss = validation.empty() ? std::nan("") : validate(true);
  if (!validation.empty())
    spdlog::info("teacher: validation loss {:.4f} (perplexity {:.2f})", result.teacher_val_loss,
                 std::exp(result.teacher_val_loss));

  BatchLoader loader(train_set, c.batch_size, c.seq_len, c.seed, c.shuffle);
  loader.seek(state.data);
  const LrSchedule schedule{c.adamw.lr, c.warmup_steps, c.steps, c.decay, c.min_lr};
  const std::string title = fmt::format("retort distill: {}", fs::path(c.output_dir).filename().string());
  auto refresh_report = [&] {
    write_file_atomically(run.report_path, render_report_html(title, records, settings_text(entries)));
  };
  auto checkpoint = [&] {
    state.data = loader.position();
    // The projection state goes into the checkpoint before it is marked complete: a checkpoint
    // without it could not be resumed.
    last_checkpoint = save_checkpoint(
        c.output_dir, {&sconf, &layout, student.params(), optimizer.moments().data(), state, student_tok_dir},
        c.keep_last, [&](const std::string& dir) {
          save_distill_state(dir, objective.projection_layout(), proj_params, proj_optimizer.moments(), ema);
        });
    spdlog::info("checkpoint {}", last_checkpoint);
  };

  std::vector<std::vector<int32_t>> inputs(static_cast<size_t>(c.grad_accum_steps)), targets(inputs.size());
  const auto run_start = Clock::now();
  const int64_t first_step = state.step;
  while (state.step < c.steps) {
    const auto step_start = Clock::now();
    int64_t step_targets = 0;
    for (size_t m = 0; m < inputs.size(); ++m) {
      loader.next(inputs[m], targets[m]);
      for (int32_t t : targets[m]) step_targets += t >= 0 ? 1 : 0;
    }
    const LossWeights w = step_weights(dc, state.step, ema);
    student.zero_grad();
    std::fill_n(objective.projection_grads(), proj_params.size(), 0.0f);
    std::copy_n(proj_params.data(), proj_params.size(), objective.projections());
    LossTerms sum;
    const double token_scale = step_targets > 0 ? 1.0 / double(step_targets) : 0.0;
    const double sequence_scale = 1.0 / double(c.grad_accum_steps * c.batch_size);
    for (size_t m = 0; m < inputs.size(); ++m) {
      const LossTerms t = objective.run(inputs[m].data(), targets[m].data(), w, token_scale, sequence_scale, true);
      sum.hard += t.hard, sum.soft += t.soft, sum.hidden += t.hidden, sum.attention += t.attention;
    }
    const LossWeights mean{sum.hard * token_scale, sum.soft * token_scale, sum.hidden * token_scale,
                           sum.attention * sequence_scale};
    const double loss = w.hard * mean.hard + w.soft * mean.soft + w.hidden * mean.hidden + w.attention * mean.attention;
    require(std::isfinite(loss), ErrorKind::InvalidInput,
            "step {}: the loss is {}; distillation stopped. Last good checkpoint: {}. Lower optimizer.lr or the "
            "temperature", state.step + 1, loss, last_checkpoint.empty() ? std::string("none") : last_checkpoint);
    // One global norm over the student's and the projections' gradients, clipped together.
    const double gs = global_grad_norm(student.grads(), student.parameter_count());
    const double gp = global_grad_norm(objective.projection_grads(), proj_params.size());
    const double grad_norm = std::sqrt(gs * gs + gp * gp);
    if (c.grad_clip > 0 && grad_norm > c.grad_clip) {
      const auto f = float(c.grad_clip / (grad_norm + 1e-6));
      for (size_t i = 0; i < student.parameter_count(); ++i) student.grads()[i] *= f;
      for (size_t i = 0; i < proj_params.size(); ++i) objective.projection_grads()[i] *= f;
    }
    const double lr = schedule.at(state.step);
    optimizer.step(student.params(), student.grads(), lr);
    if (!proj_params.empty()) proj_optimizer.step(proj_params.data(), objective.projection_grads(), lr);
    auto update = [&](double& e, double v) { e = e > 0 ? dc.ema_decay * e + (1 - dc.ema_decay) * v : v; };
    update(ema.hard, mean.hard), update(ema.soft, mean.soft), update(ema.hidden, mean.hidden),
        update(ema.attention, mean.attention);
    ++state.step;
    state.tokens_seen += c.grad_accum_steps * c.batch_size * c.seq_len;
    result.final_loss = loss;

    const double seconds = std::chrono::duration<double>(Clock::now() - step_start).count();
    StepRecord record{state.step, loss, lr, grad_norm, double(c.grad_accum_steps * c.batch_size * c.seq_len) / seconds,
                      std::nullopt};
    const bool last = state.step == c.steps;
    if (!validation.empty() && ((c.eval_every > 0 && state.step % c.eval_every == 0) || last)) {
      record.val_loss = validate(false);
      spdlog::info("step {}: student validation loss {:.4f} (perplexity {:.2f}; teacher {:.2f})", state.step,
                   *record.val_loss, std::exp(*record.val_loss), std::exp(result.teacher_val_loss));
    }
    records.push_back(record);
    metrics << metrics_json_line(record) << std::endl;
    terms_log << nlohmann::json{{"step", state.step},
                                {"hard", mean.hard}, {"soft", mean.soft}, {"hidden", mean.hidden},
                                {"attention", mean.attention}, {"w_hard", w.hard}, {"w_soft", w.soft},
                                {"w_hidden", w.hidden}, {"w_attention", w.attention}}.dump()
              << std::endl;
    if (state.step % c.log_every == 0 || last) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - run_start).count();
      const double eta = elapsed / double(state.step - first_step) * double(c.steps - state.step);
      spdlog::info("step {}/{} | loss {:.4f} = {:.3g}·hard {:.4f} + {:.3g}·soft {:.4f} + {:.3g}·hidden {:.4f} + "
                   "{:.3g}·attn {:.4f} | lr {:.3e} | grad norm {:.3f} | {:.0f} tok/s | ETA {:.0f}s",
                   state.step, c.steps, loss, w.hard, mean.hard, w.soft, mean.soft, w.hidden, mean.hidden, w.attention,
                   mean.attention, lr, grad_norm, record.tokens_per_second, eta);
    }
    if ((c.save_every > 0 && state.step % c.save_every == 0) || last) checkpoint();
    if (record.val_loss || state.step % 50 == 0 || last) refresh_report();
  }
  refresh_report();
  result.steps = state.step;
  result.val_loss = records.empty() || !records.back().val_loss ? std::nan("") : *records.back().val_loss;
  result.last_checkpoint = last_checkpoint;
  return result;
}

}  // namespace retort::train

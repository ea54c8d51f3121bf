// The distillation loop behind `retort distill CONFIG.yaml`: the student's model, data,
// optimizer, schedule, checkpoints, metrics and report are those of `retort train` (the same
// functions from train/); what is added is the teacher, the combined loss with its weighting
// schedule, and the hidden-state projections (trained with their own AdamW state, saved beside
// each checkpoint as distill_state.safetensors).
#include <cblas.h>

#include <algorithm>
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
#include "train/step_loop.h"
#include "train/student_init.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/log.h"
#include "util/thread_pool.h"

namespace retort::train {

namespace fs = std::filesystem;

namespace {

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

// The distillation loss of `retort distill` for the one step loop: the student's combined loss
// through DistillObjective, with the projections as a second trained buffer.
class DistillLoss final : public Objective {
 public:
  DistillLoss(const DistillConfig& dc, TrainModel<float>& student, DistillObjective<float>& objective,
              AdamW& optimizer, AdamW& proj_optimizer, std::vector<float>& proj_params, LossWeights& ema,
              const std::vector<Example>& validation, double teacher_val_loss, const std::string& terms_path)
      : dc_(dc), student_(student), objective_(objective), optimizer_(optimizer), proj_optimizer_(proj_optimizer),
        proj_params_(proj_params), ema_(ema), validation_(validation), teacher_val_loss_(teacher_val_loss),
        terms_log_() {
    if (!terms_path.empty()) terms_log_.open(terms_path, std::ios::app);  // "": a rank that does not write
  }

  const char* activity() const override { return "distillation"; }
  const char* nonfinite_advice() const override { return "Lower optimizer.lr or the temperature"; }
  std::vector<TrainedBuffer> trained_buffers() override {
    return {{student_.params(), student_.grads(), student_.parameter_count(), &optimizer_},
            {proj_params_.data(), objective_.projection_grads(), proj_params_.size(), &proj_optimizer_}};
  }
  void begin_step(int64_t step) override {
    w_ = step_weights(dc_, step, ema_);
    student_.zero_grad();
    std::fill_n(objective_.projection_grads(), proj_params_.size(), 0.0f);
    std::copy_n(proj_params_.data(), proj_params_.size(), objective_.projections());
    sum_ = {};
  }
  void set_gradient_ready(std::function<void(size_t, size_t)> ready) override {
    student_.set_gradient_ready(std::move(ready));
  }
  void accumulate(const int32_t* inputs, const int32_t* targets, const StepScales& scales) override {
    // The returned terms are unscaled sums; the scales weigh their gradients only.
    const LossTerms t = objective_.run(inputs, targets, w_, scales.token * scales.loss_scale,
                                       scales.sequence * scales.loss_scale, true);
    sum_.hard += t.hard, sum_.soft += t.soft, sum_.hidden += t.hidden, sum_.attention += t.attention;
  }
  std::vector<double> step_sums() const override { return {sum_.hard, sum_.soft, sum_.hidden, sum_.attention}; }
  double step_loss(const std::vector<double>& sums, const StepScales& scales) override {
    mean_ = {sums[0] * scales.token, sums[1] * scales.token, sums[2] * scales.token, sums[3] * scales.sequence};
    return w_.hard * mean_.hard + w_.soft * mean_.soft + w_.hidden * mean_.hidden + w_.attention * mean_.attention;
  }
  void end_step(const StepRecord& record, bool writes) override {
    auto update = [&](double& e, double v) { e = e > 0 ? dc_.ema_decay * e + (1 - dc_.ema_decay) * v : v; };
    update(ema_.hard, mean_.hard), update(ema_.soft, mean_.soft), update(ema_.hidden, mean_.hidden),
        update(ema_.attention, mean_.attention);
    if (!writes) return;
    terms_log_ << nlohmann::json{{"step", record.step},
                                 {"hard", mean_.hard}, {"soft", mean_.soft}, {"hidden", mean_.hidden},
                                 {"attention", mean_.attention}, {"w_hard", w_.hard}, {"w_soft", w_.soft},
                                 {"w_hidden", w_.hidden}, {"w_attention", w_.attention}}.dump()
               << std::endl;
  }
  double validate(int64_t step) override {
    const double loss = validation_loss(dc_.train, validation_, [&](const int32_t* in, const int32_t* tg) {
      return student_.forward(in, tg).sum;
    });
    spdlog::info("step {}: student validation loss {:.4f} (perplexity {:.2f}; teacher {:.2f})", step, loss,
                 std::exp(loss), std::exp(teacher_val_loss_));
    return loss;
  }
  void log_step(const StepRecord& r, int64_t total_steps, double eta_seconds) const override {
    spdlog::info("step {}/{} | loss {:.4f} = {:.3g}·hard {:.4f} + {:.3g}·soft {:.4f} + {:.3g}·hidden {:.4f} + "
                 "{:.3g}·attn {:.4f} | lr {:.3e} | grad norm {:.3f} | {:.0f} tok/s | ETA {:.0f}s",
                 r.step, total_steps, r.loss, w_.hard, mean_.hard, w_.soft, mean_.soft, w_.hidden, mean_.hidden,
                 w_.attention, mean_.attention, r.lr, r.grad_norm, r.tokens_per_second, eta_seconds);
  }
  void save_state(const std::string& dir) const override {
    save_distill_state(dir, objective_.projection_layout(), proj_params_, proj_optimizer_.moments(), ema_);
  }

 private:
  const DistillConfig& dc_;
  TrainModel<float>& student_;
  DistillObjective<float>& objective_;
  AdamW& optimizer_;
  AdamW& proj_optimizer_;
  std::vector<float>& proj_params_;
  LossWeights& ema_;
  const std::vector<Example>& validation_;
  double teacher_val_loss_;
  std::ofstream terms_log_;
  LossWeights w_, mean_;
  LossTerms sum_;
};

}  // namespace

DistillRunResult run_distillation(const DistillConfig& dc, const std::vector<ConfigEntry>& entries,
                                  const DistillRunOptions& run_options) {
  const TrainConfig& c = dc.train;
  set_run_threads(c);
  spdlog::info("distillation settings (file values and defaults):\n{}", settings_text(entries));

  // Checked before anything is written, so a mistaken fresh run cannot overwrite the run's student-init.
  RankGroup& ranks = *run_options.ranks;
  refuse_used_run_directory(c, run_options.resume, {dc.teacher_model, dc.teacher_tokenizer});
  if (dc.student.from_teacher && !run_options.resume && ranks.writes())
    write_student_from_teacher(dc.teacher_model, dc.student, c.model_init);
  ranks.barrier();  // the other ranks read the student rank 0 wrote
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
  TrainModel<float> student(sconf, model_batch(c), c.seq_len, train_model_options(c));
  TrainModel<float> teacher(tconf, model_batch(c), c.seq_len, {false, false});
  load_parameters(teacher.layout(), *Checkpoint::open_directory(dc.teacher_model), teacher.params());
  DistillObjective<float> objective(dc, student, teacher);
  const ParameterLayout& layout = student.layout();
  AdamW optimizer(layout, c.adamw);
  AdamW proj_optimizer(objective.projection_layout(), c.adamw);
  std::vector<float> proj_params(objective.projections(), objective.projections() + objective.projection_layout().total);

  // Data exactly as `retort train` reads it (same loaders, split, cache).
  const std::string fingerprint = file_fingerprint((fs::path(student_tok_dir) / "tokenizer.json").string());
  const DataSets data = load_data_sets(c, tokenizer.get(), fingerprint, sconf.vocab_size, ranks);
  const std::vector<Example>& train_set = data.train;
  const std::vector<Example>& validation = data.validation;
  spdlog::info("data: {} training and {} validation examples; teacher {} layers × {} hidden, student {} layers × {}",
               train_set.size(), validation.size(), tconf.num_layers, tconf.hidden_size, sconf.num_layers,
               sconf.hidden_size);

  OpenedRun run = open_or_resume_run(c, run_options.resume, sconf, layout, student.params(), optimizer, ranks);
  TrainerState& state = run.state;
  const std::string terms_path = (fs::path(c.output_dir) / "distill_metrics.jsonl").string();
  LossWeights ema;
  if (!run.resumed_from.empty()) {
    ema = load_distill_state(run.resumed_from, objective.projection_layout(), proj_params, proj_optimizer.moments());
    proj_optimizer.set_steps_taken(state.step - state.skipped_steps);
  } else {
    objective.init_projections(c.seed);
    std::copy_n(objective.projections(), proj_params.size(), proj_params.data());
  }
  if (ranks.writes()) keep_logged_terms(terms_path, state.step);  // a resumed run redoes the steps after its checkpoint

  DistillRunResult result;
  result.teacher_val_loss =
      validation.empty() || !ranks.writes() ? std::nan("") : validation_loss(c, validation, [&](const int32_t* in, const int32_t* tg) {
        return objective.teacher_loss(in, tg);
      });
  if (!validation.empty() && ranks.writes())
    spdlog::info("teacher: validation loss {:.4f} (perplexity {:.2f})", result.teacher_val_loss,
                 std::exp(result.teacher_val_loss));

  DistillLoss loss(dc, student, objective, optimizer, proj_optimizer, proj_params, ema, validation,
                   result.teacher_val_loss, ranks.writes() ? terms_path : "");
  const LoopSetup setup{&c,     &entries, fmt::format("retort distill: {}", fs::path(c.output_dir).filename().string()),
                        &sconf, &layout,  student.params(),
                        &optimizer, student_tok_dir, &train_set,
                        !validation.empty(), &ranks,
                        run_options.stop_at_step};
  const LoopResult loop = run_step_loop(setup, run, loss);
  result.steps = loop.steps;
  result.final_loss = loop.final_loss;
  result.val_loss = run.records.empty() || !run.records.back().val_loss ? std::nan("") : *run.records.back().val_loss;
  result.last_checkpoint = loop.last_checkpoint;
  return result;
}

}  // namespace retort::train

#include "eval/pipeline.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "eval/pipeline_evaluation.h"
#include "eval/pipeline_report.h"
#include "train/checkpoint.h"
#include "train/distill.h"
#include "train/trainer.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/log.h"

namespace retort {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kStageNames[] = {"teacher", "student", "baseline", "quantize", "evaluate", "report"};

// What each stage owns under DIR: removed when the stage is run again with --from.
std::vector<std::string> stage_outputs(PipelineStage stage) {
  switch (stage) {
    case PipelineStage::Teacher: return {"teacher"};
    case PipelineStage::Student: return {"student"};
    case PipelineStage::Baseline: return {"baseline"};
    case PipelineStage::Quantize: return {"models"};
    case PipelineStage::Evaluate: return {"evaluation-scratch"};
    case PipelineStage::Report: return {"report.md", "report.html", "report.json"};
  }
  return {};
}

// DIR/pipeline-state.json: the config's fingerprint and, per finished stage, what it produced.
class PipelineState {
 public:
  PipelineState(std::string dir, std::string config_fingerprint)
      : path_((fs::path(dir) / "pipeline-state.json").string()), fingerprint_(std::move(config_fingerprint)) {
    std::ifstream in(path_);
    if (!in.good()) {
      state_ = {{"config_fingerprint", fingerprint_}, {"stages", json::object()}};
      return;
    }
    try {
      state_ = json::parse(in);
    } catch (const json::exception& e) {
      fail(ErrorKind::InvalidInput, "{}: not valid JSON ({}); remove it to start the pipeline over", path_, e.what());
    }
  }
  bool done(PipelineStage s) const { return state_["stages"].contains(stage_name(s)); }
  const json& outputs(PipelineStage s) const { return state_["stages"][stage_name(s)]; }
  const json& all() const { return state_; }
  void finish(PipelineStage s, json outputs) {
    state_["stages"][stage_name(s)] = std::move(outputs);
    save();
  }
  void forget(PipelineStage s) { state_["stages"].erase(stage_name(s)); }
  // Finished stages were made from this very config, or the run would mix two pipelines.
  void check_config(const std::string& source) const {
    if (state_["stages"].empty() || state_["config_fingerprint"] == fingerprint_) return;
    fail(ErrorKind::InvalidInput,
         "{} changed since the finished stages ({}) ran: rerun with --from STAGE to redo the stages the change "
         "affects, or give the pipeline another dir", source, path_);
  }
  void adopt_config() {
    state_["config_fingerprint"] = fingerprint_;
    save();
  }

 private:
  void save() { write_file_atomically(path_, state_.dump(2) + "\n"); }
  std::string path_, fingerprint_;
  json state_;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string absolute(const std::string& path) { return fs::absolute(path).lexically_normal().string(); }

// An inline config with the pipeline's settings filled in, as YAML text for the train/distill parsers.
std::string with_settings(const std::string& yaml_text, const std::vector<std::pair<std::string, std::string>>& set,
                          const std::vector<std::string>& drop = {}) {
  YAML::Node node = YAML::Load(yaml_text);
  for (const std::string& key : drop) node.remove(key);
  for (const auto& [path, value] : set) {
    const size_t dot = path.find('.');
    if (dot == std::string::npos) node[path] = value;
    else node[path.substr(0, dot)][path.substr(dot + 1)] = value;
  }
  YAML::Emitter out;
  out << node;
  return out.c_str();
}

// A training stage resumes from its own newest checkpoint when an earlier run was interrupted.
bool has_checkpoint(const std::string& dir) { return train::latest_checkpoint(dir).has_value(); }

json run_teacher(const PipelineConfig& c) {
  if (!c.teacher_model.empty()) {
    require(fs::exists(fs::path(c.teacher_model) / "config.json"), ErrorKind::NotFound,
            "teacher.model '{}' is not a Hugging Face checkpoint directory (no config.json)", c.teacher_model);
    return {{"model", absolute(c.teacher_model)}, {"trained", false}};
  }
  const std::string dir = absolute((fs::path(c.dir) / "teacher").string());
  std::vector<train::ConfigEntry> entries;
  const train::TrainConfig config = train::parse_train_config(
      with_settings(c.teacher_train_yaml, {{"checkpointing.dir", dir}}), c.source + ": teacher.train", c.base_dir,
      &entries);
  const train::TrainRunResult r = train::run_training(config, entries, {has_checkpoint(dir)});
  return {{"model", r.last_checkpoint}, {"trained", true}, {"steps", r.steps}, {"final_loss", r.final_loss},
          {"report", dir + "/report.html"}};
}

train::DistillConfig student_config(const PipelineConfig& c, const std::string& teacher,
                                    std::vector<train::ConfigEntry>* entries) {
  const std::string dir = absolute((fs::path(c.dir) / "student").string());
  return train::parse_distill_config(
      with_settings(c.student_distill_yaml, {{"teacher.model", teacher}, {"checkpointing.dir", dir}}),
      c.source + ": student.distill", c.base_dir, entries);
}

json run_student(const PipelineConfig& c, const std::string& teacher) {
  std::vector<train::ConfigEntry> entries;
  const train::DistillConfig config = student_config(c, teacher, &entries);
  const train::DistillRunResult r =
      train::run_distillation(config, entries, {has_checkpoint(config.train.output_dir)});
  return {{"model", r.last_checkpoint}, {"steps", r.steps}, {"final_loss", r.final_loss},
          {"val_loss", std::isnan(r.val_loss) ? json(nullptr) : json(r.val_loss)},
          {"teacher_val_loss", std::isnan(r.teacher_val_loss) ? json(nullptr) : json(r.teacher_val_loss)},
          {"report", config.train.output_dir + "/report.html"}};
}

// The same student, data, steps, seed and optimizer with the hard-label loss alone: what the
// teacher's signal is measured against. It starts from the distilled run's initial student.
json run_baseline(const PipelineConfig& c, const std::string& teacher) {
  const train::DistillConfig distill = student_config(c, teacher, nullptr);
  const std::string dir = absolute((fs::path(c.dir) / "baseline").string());
  std::vector<std::pair<std::string, std::string>> set{{"checkpointing.dir", dir}};
  if (distill.student.from_teacher) set.push_back({"model.init", absolute(distill.train.model_init)});
  std::vector<train::ConfigEntry> entries;
  const train::TrainConfig config =
      train::parse_train_config(with_settings(c.student_distill_yaml, set, {"teacher", "student", "distill", "generate"}),
                                c.source + ": student.distill (hard labels only)", c.base_dir, &entries);
  const train::TrainRunResult r = train::run_training(config, entries, {has_checkpoint(dir)});
  return {{"model", r.last_checkpoint}, {"steps", r.steps}, {"final_loss", r.final_loss},
          {"report", dir + "/report.html"}};
}

json run_quantize(const PipelineConfig& c, const std::string& student) {
  const fs::path dir = fs::path(c.dir) / "models";
  fs::create_directories(dir);
  json models = json::array();  // in the config's order
  for (QuantRecipe recipe : c.quantize) {
    const std::string name = recipe_name(recipe);
    const std::string path = absolute((dir / ("student-" + name + ".gguf")).string());
    // Written atomically, so a file that exists is whole: an interrupted stage keeps what it finished.
    if (!fs::exists(path)) {
      spdlog::info("quantize: {} → {}", student, path);
      convert_hf_to_gguf(student, path, recipe);
    }
    models.push_back({{"type", name}, {"path", path}});
  }
  return {{"models", models}};
}

}  // namespace

const char* stage_name(PipelineStage stage) { return kStageNames[static_cast<int>(stage)]; }

PipelineStage parse_stage(const std::string& name) {
  for (PipelineStage s : kPipelineStages)
    if (name == stage_name(s)) return s;
  fail(ErrorKind::InvalidInput, "unknown pipeline stage '{}'; the stages are teacher, student, baseline, quantize, "
       "evaluate, report", name);
}

PipelineResult run_pipeline(const PipelineConfig& c, const PipelineOptions& options) {
  fs::create_directories(c.dir);
  PipelineState state(c.dir, c.fingerprint);
  if (!options.from_stage.empty()) {
    const PipelineStage from = parse_stage(options.from_stage);
    for (PipelineStage s : kPipelineStages) {
      if (static_cast<int>(s) < static_cast<int>(from)) continue;
      state.forget(s);
      for (const std::string& output : stage_outputs(s)) fs::remove_all(fs::path(c.dir) / output);
    }
    state.adopt_config();
  }
  state.check_config(c.source);

  auto run_stage = [&](PipelineStage stage, const std::function<json()>& body) {
    if (state.done(stage)) {
      spdlog::info("pipeline: {} already done ({}), skipped", stage_name(stage), (fs::path(c.dir) / "pipeline-state.json").string());
      return;
    }
    if (stage == PipelineStage::Baseline && !c.baseline) return;
    spdlog::info("pipeline: stage {}", stage_name(stage));
    const auto start = std::chrono::steady_clock::now();
    json outputs = body();
    outputs["seconds"] = seconds_since(start);
    state.finish(stage, std::move(outputs));
  };
  auto model_of = [&](PipelineStage s) { return state.outputs(s)["model"].get<std::string>(); };

  run_stage(PipelineStage::Teacher, [&] { return run_teacher(c); });
  run_stage(PipelineStage::Student, [&] { return run_student(c, model_of(PipelineStage::Teacher)); });
  run_stage(PipelineStage::Baseline, [&] { return run_baseline(c, model_of(PipelineStage::Teacher)); });
  run_stage(PipelineStage::Quantize, [&] { return run_quantize(c, model_of(PipelineStage::Student)); });
  run_stage(PipelineStage::Evaluate, [&] { return evaluate_pipeline_models(c, state.all()); });
  run_stage(PipelineStage::Report, [&] { return write_pipeline_report(c, state.all()); });

  PipelineResult result;
  result.report_path = state.outputs(PipelineStage::Report)["html"].get<std::string>();
  std::ifstream markdown(state.outputs(PipelineStage::Report)["markdown"].get<std::string>());
  std::stringstream text;
  text << markdown.rdbuf();
  result.report_markdown = text.str();
  result.serve_model = state.outputs(PipelineStage::Report)["serve_model"].get<std::string>();
  return result;
}

}  // namespace retort

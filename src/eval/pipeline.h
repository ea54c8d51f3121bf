#pragma once
// `retort pipeline CONFIG.yaml`: teacher → distilled student (and the same student trained on the
// hard labels alone, as the baseline) → quantized students → evaluation → report, in one command.
// Each stage records its outputs in DIR/pipeline-state.json when it finishes; a rerun skips the
// finished stages and resumes an interrupted training stage from its newest checkpoint.
#include <string>
#include <vector>

#include "eval/pipeline_config.h"

namespace retort {

enum class PipelineStage { Teacher, Student, Baseline, Quantize, Evaluate, Report };

inline constexpr PipelineStage kPipelineStages[] = {PipelineStage::Teacher,  PipelineStage::Student,
                                                    PipelineStage::Baseline, PipelineStage::Quantize,
                                                    PipelineStage::Evaluate, PipelineStage::Report};

const char* stage_name(PipelineStage stage);
PipelineStage parse_stage(const std::string& name);  // error lists the stage names

struct PipelineOptions {
  // Run again from this stage on (its outputs and the later stages' are replaced).
  std::string from_stage;
};

struct PipelineResult {
  std::string report_markdown;  // DIR/report.md as written
  std::string report_path;      // DIR/report.html
  std::string serve_model;      // the smallest quantized student, for `retort serve`
};

PipelineResult run_pipeline(const PipelineConfig& config, const PipelineOptions& options);

}  // namespace retort

#pragma once
// The pipeline's report: teacher, distilled student, hard-label student and each quantized student
// side by side (size, held-out perplexity, KL to the teacher, task accuracy, prefill/decode speed),
// the two students' validation curves, and the command that serves the result; as Markdown, a
// self-contained HTML page and JSON, written atomically into the pipeline's dir.
#include <nlohmann/json.hpp>
#include <string>

#include "eval/pipeline_config.h"

namespace retort {

std::string pipeline_markdown(const PipelineConfig& config, const nlohmann::json& state);

// Writes DIR/report.{md,html,json}; returns {"markdown", "html", "json", "serve_model"} paths.
nlohmann::json write_pipeline_report(const PipelineConfig& config, const nlohmann::json& state);

}  // namespace retort

#pragma once
// The pipeline's evaluate stage: every model it made (teacher, distilled student, hard-label
// student, quantized students) on the same held-out text and prompts, the teacher as the reference.
#include <nlohmann/json.hpp>

#include "eval/pipeline_config.h"

namespace retort {

// Reads the models from the pipeline state's finished stages; returns the stage's outputs:
// {"rows": [{label, path, parameters, file_bytes, perplexity, kl_to_teacher, ...}], "context", ...}.
nlohmann::json evaluate_pipeline_models(const PipelineConfig& config, const nlohmann::json& state);

}  // namespace retort

// `retort pipeline CONFIG.yaml [--from STAGE]`: teacher → distilled student → quantized students →
// evaluation → report (src/eval/pipeline.cpp); a rerun continues where the last one stopped.
#include <cstdio>

#include "cli/commands.h"
#include "eval/pipeline.h"
#include "util/log.h"

namespace retort::cli {

void add_pipeline_command(CLI::App& app) {
  struct Options {
    std::string config_path;
    std::string from_stage;
  };
  auto options = std::make_shared<Options>();
  auto* command = app.add_subcommand(
      "pipeline", "Distill → quantize → evaluate → report from a YAML config; rerun to resume where it stopped");
  command->add_option("config", options->config_path, "Pipeline config (YAML; see configs/pipeline/)")->required();
  command->add_option("--from", options->from_stage,
                      "Redo this stage and every later one (teacher, student, baseline, quantize, evaluate, report)");
  command->callback([options] {
    const PipelineConfig config = load_pipeline_config(options->config_path);
    const PipelineResult result = run_pipeline(config, {options->from_stage});
    std::fputs(("\n" + result.report_markdown).c_str(), stdout);
    spdlog::info("report: {}", result.report_path);
  });
}

}  // namespace retort::cli

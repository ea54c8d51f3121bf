// offline_bench_markdown and offline_bench_json (declared in offline_bench.h).
#include <cmath>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "eval/offline_bench.h"
#include "model/kv_cache.h"

namespace retort {
namespace {

// "12.3" for one repetition, "12.3 (11.9–12.5)" for several: the median, then the range.
std::string spread_cell(const Spread& spread, int decimals) {
  if (spread.samples.size() <= 1) return fmt::format("{:.{}f}", spread.median, decimals);
  return fmt::format("{:.{}f} ({:.{}f}–{:.{}f})", spread.median, decimals, spread.min, decimals, spread.max, decimals);
}

std::string file_name(const std::string& path) {
  const std::filesystem::path p = std::filesystem::path(path).lexically_normal();
  return p.has_filename() ? p.filename().string() : p.parent_path().filename().string();
}

// The file or directory name, or the whole path where two models share a name (model.gguf twice).
std::string model_label(const std::vector<ModelBenchFigures>& models, const ModelBenchFigures& model) {
  const std::string name = file_name(model.path);
  for (const ModelBenchFigures& other : models)
    if (&other != &model && file_name(other.path) == name) return model.path;
  return name;
}

std::string decode_table(const std::vector<ModelBenchFigures>& models, const OfflineBenchOptions& options) {
  std::string text = fmt::format(
      "| model | threads | bandwidth GB/s | prefill {} tok/s | depth | decode {} tok/s | roofline tok/s | "
      "decode ÷ roofline | peak RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
      options.prompt_tokens, options.decode_tokens);
  for (const ModelBenchFigures& model : models)
    for (const ThreadsFigures& run : model.threads)
      for (const DepthFigures& depth : run.depths)
        text += fmt::format("| {} | {} | {} | {} | {} | {} | {:.2f} | {:.0f}% | {:.0f} |\n", model_label(models, model),
                            run.threads, spread_cell(run.bandwidth_gbs, 1), spread_cell(run.prefill_tokens_per_second, 1),
                            depth.depth, spread_cell(depth.decode_tokens_per_second, 2),
                            depth.roofline_tokens_per_second,
                            100.0 * depth.decode_tokens_per_second.median / depth.roofline_tokens_per_second,
                            run.peak_rss_mib);
  return text;
}

std::string batch_table(const std::vector<ModelBenchFigures>& models, const OfflineBenchOptions& options) {
  std::string text = fmt::format(
      "| model | threads | batch | aggregate decode tok/s | ms per step | × batch 1 |\n"
      "|---|---:|---:|---:|---:|---:|\n");
  for (const ModelBenchFigures& model : models)
    for (const ThreadsFigures& run : model.threads) {
      double single = 0;
      for (const BatchFigures& batch : run.batches)
        if (batch.batch == 1) single = batch.aggregate_tokens_per_second.median;
      for (const BatchFigures& batch : run.batches) {
        const double rate = batch.aggregate_tokens_per_second.median;
        text += fmt::format("| {} | {} | {} | {} | {} | {} |\n", model_label(models, model), run.threads, batch.batch,
                            spread_cell(batch.aggregate_tokens_per_second, 1), spread_cell(batch.step_milliseconds, 2),
                            single > 0 ? fmt::format("{:.2f}", rate / single) : "–");
      }
    }
  return text;
}

nlohmann::json spread_json(const Spread& spread) {
  return {{"min", spread.min}, {"median", spread.median}, {"max", spread.max}, {"samples", spread.samples}};
}

nlohmann::json threads_json(const ThreadsFigures& run) {
  nlohmann::json decode = nlohmann::json::array();
  for (const DepthFigures& depth : run.depths)
    decode.push_back({{"depth", depth.depth},
                      {"tokens_per_second", spread_json(depth.decode_tokens_per_second)},
                      {"roofline_tokens_per_second", depth.roofline_tokens_per_second},
                      {"roofline_share_median", depth.decode_tokens_per_second.median / depth.roofline_tokens_per_second},
                      {"roofline_share_max", depth.decode_tokens_per_second.max / depth.roofline_tokens_per_second},
                      {"joules_per_token", depth.joules_per_token ? nlohmann::json(*depth.joules_per_token) : nlohmann::json()}});
  nlohmann::json batched = nlohmann::json::array();
  for (const BatchFigures& batch : run.batches)
    batched.push_back({{"batch", batch.batch},
                       {"aggregate_tokens_per_second", spread_json(batch.aggregate_tokens_per_second)},
                       {"step_ms", spread_json(batch.step_milliseconds)}});
  return {{"threads", run.threads},
          {"bandwidth_gbs", spread_json(run.bandwidth_gbs)},
          {"prefill_tokens_per_second", spread_json(run.prefill_tokens_per_second)},
          {"decode", decode},
          {"batched_decode", batched},
          {"peak_rss_mib", run.peak_rss_mib},
          {"peak_rss_includes_earlier_phases", !run.peak_rss_reset}};
}

}  // namespace

std::string offline_bench_markdown(const std::vector<ModelBenchFigures>& models, const OfflineBenchOptions& options) {
  std::string text = decode_table(models, options);
  if (!options.batches.empty()) {
    text += '\n';
    text += batch_table(models, options);
  }
  text += fmt::format("\nmedian (min–max) of {} repetitions; decode after DEPTH positions of context; batched: each "
                      "sequence at {} positions, {} steps; roofline = bandwidth ÷ (weights + KV read per token).\n",
                      options.reps, options.prompt_tokens, options.decode_tokens);
  for (const ModelBenchFigures& model : models)
    text += fmt::format("{}: {}, {:.3f} GB of weights read per token, backend {}, loaded in {:.2f}s\n",
                        model_label(models, model), model.architecture, model.weight_gb_per_token, model.backend,
                        model.load_seconds);
  // Energy: a figure per depth where RAPL counters exist, else the reason, once.
  for (const ModelBenchFigures& model : models) {
    if (!model.energy_unavailable.empty()) {
      text += fmt::format("energy: not measured ({})\n", model.energy_unavailable);
      break;
    }
    for (const ThreadsFigures& run : model.threads)
      for (const DepthFigures& depth : run.depths)
        if (depth.joules_per_token)
          text += fmt::format("{}: {} threads, decode at depth {}: {:.3f} J per token ({:.4f} kWh per 10,000 tokens)\n",
                              model_label(models, model), run.threads, depth.depth, *depth.joules_per_token,
                              *depth.joules_per_token * 1e4 / 3.6e6);
  }
  return text;
}

std::string offline_bench_json(const std::vector<ModelBenchFigures>& models, const OfflineBenchOptions& options) {
  nlohmann::json entries = nlohmann::json::array();
  for (const ModelBenchFigures& model : models) {
    nlohmann::json runs = nlohmann::json::array();
    for (const ThreadsFigures& run : model.threads) runs.push_back(threads_json(run));
    entries.push_back({{"path", model.path},
                       {"architecture", model.architecture},
                       {"backend", model.backend},
                       {"weight_gb_per_token", model.weight_gb_per_token},
                       {"load_seconds", model.load_seconds},
                       {"rss_after_load_mib", model.rss_after_load_mib},
                       {"energy_unavailable", model.energy_unavailable},
                       {"runs", runs}});
  }
  const nlohmann::json options_json = {{"prompt_tokens", options.prompt_tokens},
                                       {"decode_tokens", options.decode_tokens},
                                       {"depths", options.depths},
                                       {"batches", options.batches},
                                       {"threads", options.threads},
                                       {"reps", options.reps},
                                       {"kv_type", std::string(kv_cache_type_name(options.kv_type))},
                                       {"act_type", options.activation == ActivationPrecision::Bf16 ? "bf16" : "f32"},
                                       {"probe_mib", options.probe_mib}};
  return nlohmann::json{{"options", options_json}, {"models", entries}}.dump(2) + "\n";
}

}  // namespace retort

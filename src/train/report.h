#pragma once
// What a run shows of itself: one JSON line per logged step in metrics.jsonl and a self-contained
// HTML page (inline SVG, no scripts) with the loss, learning-rate and gradient-norm curves, both
// beside the checkpoints and rewritten as the run goes.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace retort::train {

struct StepRecord {
  int64_t step = 0;  // 1-based: the optimizer step just taken
  double loss = 0;
  double lr = 0;
  double grad_norm = 0;
  double tokens_per_second = 0;
  std::optional<double> val_loss;
  std::optional<double> loss_scale;  // fp16: the scale this step's gradients were taken at
  bool skipped = false;              // fp16: the gradients overflowed and the update was skipped
};

std::string metrics_json_line(const StepRecord& record);
// Reads metrics.jsonl back (for a resumed run), keeping the records up to and including max_step.
std::vector<StepRecord> read_metrics(const std::string& path, int64_t max_step);
// Rewrites the whole metrics file (atomically).
void write_metrics(const std::string& path, const std::vector<StepRecord>& records);

// A line plot as inline SVG: value against step for each series (log_scale: log10 of the values).
struct PlotSeries {
  std::string label;
  std::string color;
  std::vector<std::pair<double, double>> points;  // (step, value)
};
std::string svg_plot(const std::string& title, const std::vector<PlotSeries>& series, bool log_scale);
std::string html_escape(const std::string& text);

std::string render_report_html(const std::string& title, const std::vector<StepRecord>& records,
                               const std::string& settings_text);

}  // namespace retort::train

#include "eval/pipeline_report.h"

#include <cmath>
#include <filesystem>

#include <fmt/format.h>

#include "eval/pipeline.h"
#include "train/report.h"
#include "util/atomic_file.h"

namespace retort {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

double mib(const json& row) { return row["file_bytes"].get<double>() / (1024.0 * 1024.0); }

bool has_classify(const json& rows) { return !rows.empty() && rows[0].contains("classify"); }

std::string models_table(const json& evaluation) {
  const json& rows = evaluation["rows"];
  const bool task = has_classify(rows);
  std::string text = "| model | parameters | file MiB | perplexity | KL(teacher ‖ model) | top-1 = teacher |";
  text += task ? " accuracy | p50 ms | p99 ms |" : "";
  text += " prefill tok/s | decode tok/s |\n|---|---:|---:|---:|---:|---:|";
  text += task ? "---:|---:|---:|" : "";
  text += "---:|---:|\n";
  for (const json& row : rows) {
    text += fmt::format("| {} | {:.2f} M | {:.1f} | {:.2f} ± {:.2f} | {:.4f} | {:.1f}% |", row["label"].get<std::string>(),
                        row["parameters"].get<double>() / 1e6, mib(row), row["perplexity"].get<double>(),
                        row["perplexity_standard_error"].get<double>(), row["kl_to_teacher"].get<double>(),
                        100.0 * row["top1_agreement_with_teacher"].get<double>());
    if (task) {
      const json& k = row["classify"];
      text += fmt::format(" {:.2f}% ({}/{}) | {:.1f} | {:.1f} |", 100.0 * k["accuracy"].get<double>(),
                          k["correct"].get<int64_t>(), k["examples"].get<int64_t>(), k["p50_ms"].get<double>(),
                          k["p99_ms"].get<double>());
    }
    text += fmt::format(" {:.1f} | {:.1f} |\n", row["prefill_tokens_per_second"].get<double>(),
                        row["decode_tokens_per_second"].get<double>());
  }
  return text;
}

const json* find_row(const json& rows, const std::string& label) {
  for (const json& row : rows)
    if (row["label"] == label) return &row;
  return nullptr;
}

// Each student as the teacher's draft model (speculative decoding, greedy).
std::string drafts_table(const json& rows) {
  std::string text;
  for (const json& row : rows) {
    if (!row.contains("draft_for_teacher")) continue;
    const json& d = row["draft_for_teacher"];
    if (text.empty())
      text = fmt::format("Each student drafting for the teacher (`--draft`, {} tokens per target forward, greedy):\n\n"
                         "| draft | acceptance | tokens / target forward | teacher decode tok/s | alone | speed-up |\n"
                         "|---|---:|---:|---:|---:|---:|\n", d["draft_tokens"].get<int>());
    text += fmt::format("| {} | {:.1f} % | {:.2f} | {:.1f} | {:.1f} | {:.2f}× |\n", row["label"].get<std::string>(),
                        100.0 * d["acceptance_rate"].get<double>(), d["tokens_per_forward"].get<double>(),
                        d["teacher_decode_tokens_per_second"].get<double>(),
                        d["teacher_alone_decode_tokens_per_second"].get<double>(), d["speedup"].get<double>());
  }
  return text;
}

// BLEU/chrF against held-out references, and each model's change from the teacher's (the guide's
// "BLEU dropped by more than 5 % after distillation").
std::string bleu_table(const json& rows) {
  if (rows.empty() || !rows[0].contains("bleu")) return "";
  const double teacher = rows[0]["bleu"]["bleu"].get<double>();
  std::string text = fmt::format("BLEU and chrF2 of greedy replies against held-out references ({} prompts):\n\n"
                                 "| model | BLEU | chrF2 | BLEU change from the teacher |\n|---|---:|---:|---:|\n",
                                 rows[0]["bleu"]["sentences"].get<int64_t>());
  for (const json& row : rows) {
    const double bleu = row["bleu"]["bleu"].get<double>();
    const std::string change = teacher > 0 ? fmt::format("{:+.1f} %", 100.0 * (bleu - teacher) / teacher) : "—";
    text += fmt::format("| {} | {:.2f} | {:.2f} | {} |\n", row["label"].get<std::string>(), bleu,
                        row["bleu"]["chrf"].get<double>(), &row == &rows[0] ? std::string("—") : change);
  }
  return text;
}

// Did the teacher help? The distilled student against the same student on hard labels alone.
std::string verdict(const json& rows) {
  const json* distilled = find_row(rows, "student (distilled)");
  const json* hard = find_row(rows, "student (hard labels only)");
  const json* teacher = find_row(rows, "teacher");
  if (distilled == nullptr || hard == nullptr || teacher == nullptr) return "";
  const double d = (*distilled)["perplexity"], h = (*hard)["perplexity"], t = (*teacher)["perplexity"];
  std::string text = fmt::format(
      "Held-out perplexity: distilled student {:.2f}, the same student trained on the hard labels alone {:.2f}, "
      "teacher {:.2f}. ", d, h, t);
  if (d < h)
    text += fmt::format("Distillation wins by {:.1f} %{}.", 100.0 * (h - d) / h,
                        h > t ? fmt::format(" and closes {:.0f} % of the gap to the teacher", 100.0 * (h - d) / (h - t))
                              : std::string());
  else
    text += "Distillation did not beat the hard labels here: try a higher temperature, more soft weight or more steps.";
  return text + "\n";
}

std::string serve_model(const json& state) {
  std::string best;
  uintmax_t smallest = UINTMAX_MAX;
  for (const json& quantized : state["stages"]["quantize"]["models"]) {
    const std::string path = quantized["path"];
    const uintmax_t bytes = fs::file_size(path);
    if (bytes < smallest) smallest = bytes, best = path;
  }
  return best.empty() ? state["stages"]["student"]["model"].get<std::string>() : best;
}

std::string stage_times(const json& state) {
  std::string text;
  for (PipelineStage stage : kPipelineStages) {
    const json& stages = state["stages"];
    if (!stages.contains(stage_name(stage)) || !stages[stage_name(stage)].contains("seconds")) continue;
    text += fmt::format("{}{} {:.0f} s", text.empty() ? "" : " · ", stage_name(stage),
                        stages[stage_name(stage)]["seconds"].get<double>());
  }
  return text;
}

// Validation loss against step for both students, from their metrics.jsonl.
std::string curves_svg(const json& state) {
  std::vector<train::PlotSeries> series;
  const std::pair<const char*, const char*> runs[] = {{"student", "#d62728"}, {"baseline", "#1f77b4"}};
  for (const auto& [stage, color] : runs) {
    if (!state["stages"].contains(stage) || !state["stages"][stage].contains("report")) continue;
    const fs::path metrics = fs::path(state["stages"][stage]["report"].get<std::string>()).parent_path() / "metrics.jsonl";
    train::PlotSeries s{std::string(stage) == "student" ? "distilled" : "hard labels only", color, {}};
    for (const auto& r : train::read_metrics(metrics.string(), INT64_MAX))
      if (r.val_loss) s.points.emplace_back(double(r.step), *r.val_loss);
    series.push_back(std::move(s));
  }
  return series.empty() ? "" : train::svg_plot("student validation loss", series, false);
}

std::string markdown_to_html_table(const std::string& table) {
  std::string html = "<table>\n";
  size_t start = 0;
  for (int line = 0; start < table.size(); ++line) {
    const size_t end = table.find('\n', start);
    const std::string row = table.substr(start, end - start);
    start = end == std::string::npos ? table.size() : end + 1;
    if (line == 1 || row.size() < 2) continue;  // the |---| rule
    html += "<tr>";
    size_t cell = 1;
    while (cell < row.size()) {
      const size_t next = row.find('|', cell);
      if (next == std::string::npos) break;
      const std::string tag = line == 0 ? "th" : "td";
      html += "<" + tag + ">" + train::html_escape(row.substr(cell + 1, next - cell - 2)) + "</" + tag + ">";
      cell = next + 1;
    }
    html += "</tr>\n";
  }
  return html + "</table>\n";
}

}  // namespace

std::string pipeline_markdown(const PipelineConfig& c, const json& state) {
  const json& evaluation = state["stages"]["evaluate"];
  std::string text = "# retort pipeline: teacher → distilled student → quantized students\n\n";
  text += fmt::format("Config `{}`, outputs in `{}`. Evaluated on `{}`: {} windows of {} tokens ({} scored "
                      "positions), KL and top-1 agreement against the teacher; speed is one {}-token prefill and {} "
                      "greedy decode steps on {}.\n\n",
                      c.source, c.dir, evaluation["text"].get<std::string>(), evaluation["windows"].get<int64_t>(),
                      evaluation["context"].get<int64_t>(), evaluation["scored_positions"].get<int64_t>(),
                      evaluation["prompt_tokens"].get<int64_t>(), evaluation["decode_tokens"].get<int64_t>(),
                      evaluation["backend"].get<std::string>());
  text += models_table(evaluation) + "\n" + verdict(evaluation["rows"]);
  const std::string drafts = drafts_table(evaluation["rows"]);
  if (!drafts.empty()) text += "\n" + drafts;
  const std::string bleu = bleu_table(evaluation["rows"]);
  if (!bleu.empty()) text += "\n" + bleu;
  text += "\nStage times: " + stage_times(state) + ".\n";
  text += fmt::format("\nServe the result:\n\n```\nretort serve {} --port {}\n```\n", serve_model(state), c.serve_port);
  return text;
}

json write_pipeline_report(const PipelineConfig& c, const json& state) {
  const fs::path dir(c.dir);
  const std::string markdown = pipeline_markdown(c, state);
  const json& evaluation = state["stages"]["evaluate"];
  std::string html = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>retort pipeline report</title>"
                     "<style>body{font-family:sans-serif;margin:20px}table{border-collapse:collapse}"
                     "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}"
                     "pre{background:#f6f6f6;padding:8px}</style></head><body>\n";
  html += "<h1>retort pipeline: teacher → distilled student → quantized students</h1>\n";
  html += "<p>" + train::html_escape(fmt::format("Config {}; outputs in {}.", c.source, c.dir)) + "</p>\n";
  html += markdown_to_html_table(models_table(evaluation));
  html += "<p>" + train::html_escape(verdict(evaluation["rows"])) + "</p>\n";
  for (const std::string& section : {drafts_table(evaluation["rows"]), bleu_table(evaluation["rows"])}) {
    if (section.empty()) continue;
    const size_t table = section.find('|');  // the sentence before the table, then the table
    html += "<p>" + train::html_escape(section.substr(0, table)) + "</p>\n" + markdown_to_html_table(section.substr(table));
  }
  html += curves_svg(state) + "\n";
  html += "<p>" + train::html_escape("Stage times: " + stage_times(state)) + "</p>\n";
  html += "<pre>" + train::html_escape(fmt::format("retort serve {} --port {}", serve_model(state), c.serve_port)) +
          "</pre>\n</body></html>\n";
  json outputs{{"markdown", (dir / "report.md").string()}, {"html", (dir / "report.html").string()},
               {"json", (dir / "report.json").string()}, {"serve_model", serve_model(state)}};
  write_file_atomically(outputs["markdown"], markdown);
  write_file_atomically(outputs["html"], html);
  write_file_atomically(outputs["json"], state.dump(2) + "\n");
  return outputs;
}

}  // namespace retort

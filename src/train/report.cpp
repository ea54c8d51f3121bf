#include "train/report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "util/atomic_file.h"
#include "util/error.h"

namespace retort::train {

std::string metrics_json_line(const StepRecord& r) {
  nlohmann::json j{{"step", r.step}, {"loss", r.loss}, {"lr", r.lr}, {"grad_norm", r.grad_norm},
                   {"tokens_per_second", r.tokens_per_second}};
  if (r.val_loss) j["val_loss"] = *r.val_loss;
  if (r.loss_scale) j["loss_scale"] = *r.loss_scale;
  if (r.skipped) j["skipped"] = true;
  return j.dump();
}

std::vector<StepRecord> read_metrics(const std::string& path, int64_t max_step) {
  std::vector<StepRecord> records;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    try {
      auto j = nlohmann::json::parse(line);
      StepRecord r{j.at("step"), j.at("loss"), j.at("lr"), j.at("grad_norm"), j.at("tokens_per_second"), std::nullopt};
      if (j.contains("val_loss")) r.val_loss = j["val_loss"].get<double>();
      if (j.contains("loss_scale")) r.loss_scale = j["loss_scale"].get<double>();
      r.skipped = j.value("skipped", false);
      if (r.step <= max_step) records.push_back(r);
    } catch (const nlohmann::json::exception&) {
      break;  // a line cut short by a killed run: everything after it is gone anyway
    }
  }
  return records;
}

void write_metrics(const std::string& path, const std::vector<StepRecord>& records) {
  std::string text;
  for (const auto& r : records) text += metrics_json_line(r) + "\n";
  write_file_atomically(path, text);
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else out += c;
  }
  return out;
}

std::string svg_plot(const std::string& title, const std::vector<PlotSeries>& series, bool log_scale) {
  constexpr double W = 640, H = 260, left = 70, right = 20, top = 30, bottom = 40;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  auto ty = [&](double v) { return log_scale ? std::log10(std::max(v, 1e-12)) : v; };
  for (const auto& s : series)
    for (auto [x, y] : s.points) {
      if (!std::isfinite(y)) continue;
      x0 = std::min(x0, x); x1 = std::max(x1, x);
      y0 = std::min(y0, ty(y)); y1 = std::max(y1, ty(y));
    }
  std::string svg = fmt::format(R"(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}">)"
                                R"(<rect width="100%" height="100%" fill="#fff"/><text x="{}" y="18" font-size="14">{}</text>)",
                                W, H, W, H, left, html_escape(title));
  if (x0 > x1) return svg + R"(<text x="70" y="130" font-size="12">no data yet</text></svg>)";
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) { y1 += 0.5; y0 -= 0.5; }
  auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * (W - left - right); };
  auto py = [&](double y) { return top + (1 - (ty(y) - y0) / (y1 - y0)) * (H - top - bottom); };
  svg += fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#999"/>)", left, top,
                     W - left - right, H - top - bottom);
  for (int i = 0; i <= 4; ++i) {
    const double v = y0 + (y1 - y0) * i / 4.0;
    const double y = top + (1 - i / 4.0) * (H - top - bottom);
    svg += fmt::format(R"(<text x="{}" y="{}" font-size="10" text-anchor="end">{:.4g}</text>)", left - 4, y + 3,
                       log_scale ? std::pow(10.0, v) : v);
    const double x = x0 + (x1 - x0) * i / 4.0;
    svg += fmt::format(R"(<text x="{}" y="{}" font-size="10" text-anchor="middle">{:.0f}</text>)", px(x), H - bottom + 14, x);
  }
  svg += fmt::format(R"(<text x="{}" y="{}" font-size="11" text-anchor="middle">step</text>)", (W + left) / 2, H - 6);
  double legend_x = left + 10;
  for (const auto& s : series) {
    std::string points;
    for (auto [x, y] : s.points)
      if (std::isfinite(y)) points += fmt::format("{:.1f},{:.1f} ", px(x), py(y));
    svg += fmt::format(R"(<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>)", s.color, points);
    if (s.points.size() == 1)
      svg += fmt::format(R"(<circle cx="{:.1f}" cy="{:.1f}" r="3" fill="{}"/>)", px(s.points[0].first),
                         py(s.points[0].second), s.color);
    svg += fmt::format(R"(<text x="{}" y="{}" font-size="11" fill="{}">{}</text>)", legend_x, top + 14, s.color, s.label);
    legend_x += 110;
  }
  return svg + "</svg>";
}

std::string render_report_html(const std::string& title, const std::vector<StepRecord>& records,
                               const std::string& settings_text) {
  PlotSeries train{"train loss", "#1f77b4", {}}, val{"validation loss", "#d62728", {}};
  PlotSeries lr{"learning rate", "#2ca02c", {}}, norm{"gradient norm", "#9467bd", {}};
  for (const auto& r : records) {
    train.points.emplace_back(r.step, r.loss);
    if (r.val_loss) val.points.emplace_back(r.step, *r.val_loss);
    lr.points.emplace_back(r.step, r.lr);
    norm.points.emplace_back(r.step, r.grad_norm);
  }
  std::string summary = "no steps yet";
  if (!records.empty()) {
    const auto& last = records.back();
    summary = fmt::format("step {} · loss {:.4f} · lr {:.3g} · grad norm {:.3g} · {:.0f} tokens/s", last.step, last.loss,
                          last.lr, last.grad_norm, last.tokens_per_second);
    if (!val.points.empty()) summary += fmt::format(" · last validation loss {:.4f}", val.points.back().second);
  }
  std::string html = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + html_escape(title) +
                     "</title><style>body{font-family:sans-serif;margin:20px}svg{margin:8px 0;display:block}"
                     "pre{background:#f6f6f6;padding:8px}</style></head><body>\n";
  html += "<h1>" + html_escape(title) + "</h1>\n<p>" + html_escape(summary) + "</p>\n";
  html += svg_plot("loss", {train, val}, false) + "\n";
  html += svg_plot("learning rate", {lr}, false) + "\n";
  html += svg_plot("gradient norm (log scale)", {norm}, true) + "\n";
  html += "<h2>settings</h2><pre>" + html_escape(settings_text) + "</pre>\n</body></html>\n";
  return html;
}

}  // namespace retort::train

// serve_bench_svg (declared in serve_bench.h): two line charts drawn by hand, throughput on the left
// and latency on the right, with the concurrency levels evenly spaced along x (they are usually
// powers of two, and even spacing keeps 1 and 4 from crowding together).
#include <algorithm>
#include <cmath>
#include <functional>

#include <fmt/format.h>

#include "eval/serve_bench.h"

namespace retort {
namespace {

constexpr double kPanelWidth = 420, kPanelHeight = 300;
constexpr double kMarginLeft = 64, kMarginRight = 16, kMarginTop = 40, kMarginBottom = 44;

std::string xml_escaped(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// 1, 2 or 5 times a power of ten, at least `value`: a y-axis top that gives round tick labels.
double round_axis_top(double value) {
  if (!(value > 0) || !std::isfinite(value)) return 1;
  const double power = std::pow(10.0, std::floor(std::log10(value)));
  for (double step : {1.0, 2.0, 5.0, 10.0})
    if (step * power >= value) return step * power;
  return 10 * power;
}

struct Series {
  std::string label;
  std::string colour;
  std::function<double(const LevelFigures&)> value;  // NaN: no point at that level
};

struct Panel {
  double left = 0;  // of the whole panel, axes inside the margins
  std::string title;
  std::string y_label;
  std::vector<Series> series;
};

std::string draw_axes(const Panel& panel, const std::vector<LevelFigures>& levels, double y_top, double x0, double y0,
                      double width, double height) {
  std::string svg = fmt::format("<text x=\"{:.1f}\" y=\"22\" font-size=\"14\" text-anchor=\"middle\">{}</text>\n",
                                panel.left + kPanelWidth / 2, xml_escaped(panel.title));
  svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"#333\"/>\n", x0, y0,
                     y0 - height);
  svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\" stroke=\"#333\"/>\n", x0, y0,
                     x0 + width);
  for (int tick = 0; tick <= 4; ++tick) {
    const double y = y0 - height * tick / 4.0;
    svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{2:.1f}\" x2=\"{1:.1f}\" y2=\"{2:.1f}\" stroke=\"#ddd\"/>\n", x0,
                       x0 + width, y);
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\" text-anchor=\"end\">{:g}</text>\n", x0 - 6,
                       y + 4, y_top * tick / 4.0);
  }
  for (size_t i = 0; i < levels.size(); ++i) {
    const double x = x0 + width * (static_cast<double>(i) + 0.5) / static_cast<double>(levels.size());
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\" text-anchor=\"middle\">{}</text>\n", x,
                       y0 + 16, levels[i].clients);
  }
  svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"12\" text-anchor=\"middle\">concurrent clients</text>\n",
                     x0 + width / 2, y0 + 36);
  svg += fmt::format("<text x=\"{0:.1f}\" y=\"{1:.1f}\" font-size=\"12\" text-anchor=\"middle\" "
                     "transform=\"rotate(-90 {0:.1f} {1:.1f})\">{2}</text>\n",
                     panel.left + 14, y0 - height / 2, xml_escaped(panel.y_label));
  return svg;
}

std::string draw_panel(const Panel& panel, const std::vector<LevelFigures>& levels) {
  double highest = 0;
  for (const Series& series : panel.series)
    for (const LevelFigures& level : levels)
      if (const double v = series.value(level); std::isfinite(v)) highest = std::max(highest, v);
  const double y_top = round_axis_top(highest);
  const double x0 = panel.left + kMarginLeft, y0 = kPanelHeight - kMarginBottom;
  const double width = kPanelWidth - kMarginLeft - kMarginRight, height = kPanelHeight - kMarginTop - kMarginBottom;
  std::string svg = "<g>\n" + draw_axes(panel, levels, y_top, x0, y0, width, height);
  for (size_t s = 0; s < panel.series.size(); ++s) {
    const Series& series = panel.series[s];
    std::string points;
    for (size_t i = 0; i < levels.size(); ++i) {
      const double v = series.value(levels[i]);
      if (!std::isfinite(v)) continue;
      const double x = x0 + width * (static_cast<double>(i) + 0.5) / static_cast<double>(levels.size());
      const double y = y0 - height * v / y_top;
      points += fmt::format("{:.1f},{:.1f} ", x, y);
      svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", x, y, series.colour);
    }
    svg += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>\n", series.colour, points);
    const double legend_y = kMarginTop + 4 + 14.0 * static_cast<double>(s);
    svg += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"10\" height=\"3\" fill=\"{}\"/>\n", x0 + 8, legend_y,
                       series.colour);
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\">{}</text>\n", x0 + 22, legend_y + 4,
                       xml_escaped(series.label));
  }
  return svg + "</g>\n";
}

}  // namespace

std::string serve_bench_svg(const ServeBenchReport& report) {
  Panel throughput{0, "throughput", "output tokens/s", {}};
  throughput.series = {
      {"output tok/s (all clients)", "#1f77b4", [](const LevelFigures& l) { return l.output_tokens_per_second; }},
  };
  Panel latency{kPanelWidth, "latency", "milliseconds", {}};
  latency.series = {
      {"end-to-end p50", "#d62728", [](const LevelFigures& l) { return l.end_to_end_ms.p50; }},
      {"end-to-end p99", "#ff9896", [](const LevelFigures& l) { return l.end_to_end_ms.p99; }},
      {"TTFT p50", "#9467bd", [](const LevelFigures& l) { return l.ttft_ms.p50; }},
      {"TTFT p99", "#c5b0d5", [](const LevelFigures& l) { return l.ttft_ms.p99; }},
  };
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{0:.0f}\" height=\"{1:.0f}\" "
      "viewBox=\"0 0 {0:.0f} {1:.0f}\" font-family=\"sans-serif\">\n"
      "<title>{2}</title>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      2 * kPanelWidth, kPanelHeight, xml_escaped("retort bench serve: " + report.url));
  svg += draw_panel(throughput, report.levels);
  svg += draw_panel(latency, report.levels);
  return svg + "</svg>\n";
}

}  // namespace retort

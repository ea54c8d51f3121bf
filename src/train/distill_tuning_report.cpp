#include "train/distill_tuning_report.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include <fmt/format.h>

namespace retort::train {

namespace {

// A trial's furthest result: the highest rung it finished (none when the search stopped first).
struct TrialRow {
  int64_t trial = 0;
  std::optional<TrialRecord> last;
};

std::vector<TrialRow> trial_rows(const TuneReportInput& in) {
  std::vector<TrialRow> rows;
  const int rungs = int(in.halving.rungs.size());
  for (int64_t t = 0; t < in.trials; ++t) {
    TrialRow row{t, std::nullopt};
    for (int r = rungs - 1; r >= 0 && !row.last; --r) row.last = in.state.recorded(t, r);
    rows.push_back(row);
  }
  // Furthest rung first, then lower loss (a failed run's NaN last), then trial number.
  std::sort(rows.begin(), rows.end(), [](const TrialRow& a, const TrialRow& b) {
    const int ra = a.last ? a.last->rung : -1, rb = b.last ? b.last->rung : -1;
    if (ra != rb) return ra > rb;
    if (a.last && b.last) {
      const double la = a.last->val_loss, lb = b.last->val_loss;
      if (std::isnan(la) != std::isnan(lb)) return std::isnan(lb);
      if (!std::isnan(la) && la != lb) return la < lb;
    }
    return a.trial < b.trial;
  });
  return rows;
}

std::string rung_plan_text(const std::vector<Rung>& rungs) {
  std::string text;
  for (const Rung& r : rungs)
    text += fmt::format("{}{} trial{} × {} step{}", text.empty() ? "" : ", ", r.trials, r.trials == 1 ? "" : "s",
                        r.steps, r.steps == 1 ? "" : "s");
  return text;
}

std::string loss_text(const TrialRecord& r) {
  return std::isnan(r.val_loss) ? std::string("failed") : fmt::format("{:.4f}", r.val_loss);  // why: in the state file
}

}  // namespace

std::string tune_report_markdown(const TuneReportInput& in) {
  const DistillSearchSpace& s = in.space;
  std::string md = fmt::format("# retort tune distill: {}\n\n", in.config_path);
  md += fmt::format(
      "Successive halving over {} trials (seed {}), scored on the student's validation loss; rungs: {}. Search "
      "space: temperature T log-uniform in [{}, {}], soft weight uniform in [{}, {}] with hard = 1 − soft, "
      "learning rate log-uniform in [{:.4g}, {:.4g}]. Each trial's run and config: {}/trial-NNN.\n\n",
      in.trials, in.seed, rung_plan_text(in.halving.rungs), s.temperature.low, s.temperature.high, s.soft_weight.low,
      s.soft_weight.high, s.lr.low, s.lr.high, in.out_dir);
  md += "| trial | T | hard | soft | lr | steps | val loss | rung |\n";
  md += "|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  const int rungs = int(in.halving.rungs.size());
  for (const TrialRow& row : trial_rows(in)) {
    const DistillTrialSetting& t = in.settings[size_t(row.trial)];
    const std::string name = row.trial == in.best_trial ? fmt::format("{} (best)", row.trial)
                                                                : std::to_string(row.trial);
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} |\n", name, t.temperature, t.hard_weight,
                      t.soft_weight, t.lr, row.last ? std::to_string(row.last->steps) : "—",
                      row.last ? loss_text(*row.last) : "not run",
                      row.last ? fmt::format("{}/{}", row.last->rung + 1, rungs) : "—");
  }
  md += "\n";
  if (!in.halving.complete)
    md += fmt::format("The search stopped at its time limit after {} trial run{}; the best so far is provisional. Run "
                      "the same command again to continue it (finished runs are kept in {}).\n\n",
                      in.state.recorded_count(), in.state.recorded_count() == 1 ? "" : "s", in.state.path());
  if (in.best_trial >= 0) {
    const DistillTrialSetting& b = in.settings[size_t(in.best_trial)];
    md += fmt::format("{}: trial {} (T {}, hard {}, soft {}, lr {}); its settings in the original config: {} (run it "
                      "with `retort distill {}`).\n",
                      in.halving.complete ? "Best" : "Best so far", in.best_trial, b.temperature, b.hard_weight,
                      b.soft_weight, b.lr, in.best_config_path, in.best_config_path);
  } else {
    md += "No trial run finished with a finite validation loss, so there is no best config yet.\n";
  }
  return md;
}

std::string best_config_header(const TuneReportInput& in) {
  const int64_t best = in.best_trial;
  const std::optional<TrialRecord> r = in.state.recorded(best, in.best_rung);
  return fmt::format(
      "# {}: {} with the settings of trial {} of `retort tune distill` (T, weights.hard, weights.soft, optimizer.lr);\n"
      "# validation loss {} after {} of the search's {} steps{}. Paths made absolute. Table: {}/tune.md\n",
      in.best_config_path, in.config_path, best, r ? loss_text(*r) : "?", r ? r->steps : 0, in.steps,
      in.halving.complete ? "" : " (the search is not finished: provisional)", in.out_dir);
}

}  // namespace retort::train

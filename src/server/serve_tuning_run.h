#pragma once
// `retort tune serve MODEL --target-p99-ms MS`: the search of eval/serve_tuning run on real
// servers. Each trial starts `retort serve MODEL` with the trial's setting as a child process on a
// free port (util/child_process: never left behind), waits until /health answers, drives it with
// the load driver of `retort bench serve` (one level of --clients) and stops it. DIR/tune.md is
// rewritten after every trial, so an interrupted search leaves its table; the winner goes to
// DIR/best-serve.yaml, a `retort serve --config` file.
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "eval/serve_tuning.h"

namespace retort::server {

// A serve flag without its dashes and its value, e.g. {"batch-tokens", "512"}.
using ServeFlag = std::pair<std::string, std::string>;

// The serve flags that apply `setting`: the one list behind both a trial's command line and
// best-serve.yaml, so the two cannot disagree.
std::vector<ServeFlag> setting_flags(const ServeSetting& setting);

struct TuneServeOptions {
  std::string retort_binary;           // started as `retort serve` for each trial
  std::string model_path;
  std::vector<ServeFlag> fixed_flags;  // given to every trial and written to best-serve.yaml (template, ctx)
  int clients = 16;
  int64_t requests = 0;                // per trial; 0: 4 × clients
  int64_t max_tokens = 64;
  std::vector<std::string> prompts;
  double request_timeout_seconds = 120;  // a request still running after this fails
  double target_p99_ms = 0;
  ServeSearchSpace space;
  int64_t max_trials = 12;
  double time_limit_seconds = 0;       // > 0: no trial starts after this, and a running one is cut off
  double startup_timeout_seconds = 120;
  std::string out_dir;
};

struct TuneServeResult {
  ServeSearchResult search;
  std::string table_markdown;  // DIR/tune.md as written
  std::string best_yaml_path;  // DIR/best-serve.yaml; empty when no setting met the target
};

using ProgressLine = std::function<void(const std::string&)>;

TuneServeResult tune_serving(const TuneServeOptions& options, const ProgressLine& progress);

// DIR/best-serve.yaml: the model, the fixed flags and the winner's setting as `retort serve`
// config keys, headed by a comment with what the search measured.
std::string best_serve_yaml(const TuneServeOptions& options, const ServeSetting& setting, const std::string& summary);

}  // namespace retort::server

#include "train/step_loop.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "train/checkpoint.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/log.h"
#include "util/thread_pool.h"

namespace retort::train {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

// One norm over every buffer: each buffer's norm (global_grad_norm's fixed block order) squared and
// summed in buffer order. For a single buffer this is its norm exactly (sqrt(x·x) = |x| in IEEE).
double buffers_grad_norm(const std::vector<TrainedBuffer>& buffers) {
  double squares = 0;
  for (const auto& b : buffers) {
    const double n = global_grad_norm(b.grads, b.count);
    squares += n * n;
  }
  return std::sqrt(squares);
}

void scale_grads(const std::vector<TrainedBuffer>& buffers, float factor) {
  for (const auto& b : buffers)
    thread_pool().parallel_for(b.count, 1 << 14, [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i) b.grads[i] *= factor;
    });
}

// This rank's rows of a global batch read into `rows` (the whole batch with one rank).
void keep_rank_rows(std::vector<int32_t>& rows, const RankGroup& ranks, size_t rows_per_rank) {
  if (ranks.ranks() == 1) return;
  const size_t first = size_t(ranks.rank()) * rows_per_rank;
  std::copy(rows.begin() + first, rows.begin() + first + rows_per_rank, rows.begin());
  rows.resize(rows_per_rank);
}

}  // namespace

RankGroup& single_process() {
  static RankGroup one;
  return one;
}

LoopResult run_step_loop(const LoopSetup& setup, OpenedRun& run, Objective& objective) {
  const TrainConfig& c = *setup.config;
  TrainerState& state = run.state;
  std::vector<StepRecord>& records = run.records;
  LoopResult result;
  result.last_checkpoint = run.resumed_from;

  RankGroup& ranks = *setup.ranks;
  const bool writes = ranks.writes();
  std::ofstream metrics;
  if (writes) metrics.open(run.metrics_path, std::ios::app);
  BatchLoader loader(*setup.train_set, c.batch_size * ranks.ranks(), c.seq_len, c.seed, c.shuffle);
  loader.seek(state.data);
  const LrSchedule schedule{c.adamw.lr, c.warmup_steps, c.steps, c.decay, c.min_lr};
  auto refresh_report = [&] {
    write_file_atomically(run.report_path, render_report_html(setup.title, records, settings_text(*setup.entries)));
  };
  auto checkpoint = [&] {
    state.data = loader.position();
    const CheckpointContents contents{setup.model_config, setup.layout,         setup.params,
                                      setup.optimizer->moments().data(), state, setup.tokenizer_dir};
    result.last_checkpoint = save_checkpoint(c.output_dir, contents, c.keep_last,
                                             [&](const std::string& dir) { objective.save_state(dir); });
    spdlog::info("checkpoint {}", result.last_checkpoint);
  };
  auto stop_on_nonfinite = [&](double value, const char* what) {
    require(std::isfinite(value), ErrorKind::InvalidInput, "step {}: the {} is {}; {} stopped. Last good checkpoint: {}. {}",
            state.step + 1, what, value, objective.activity(),
            result.last_checkpoint.empty() ? std::string("none") : result.last_checkpoint, objective.nonfinite_advice());
  };

  const std::vector<TrainedBuffer> buffers = objective.trained_buffers();
  std::vector<std::vector<int32_t>> inputs(static_cast<size_t>(c.grad_accum_steps)), targets(inputs.size());
  const int64_t step_sequences = c.grad_accum_steps * c.batch_size * ranks.ranks();
  const int64_t step_tokens = step_sequences * c.seq_len;
  const auto run_start = Clock::now();
  const int64_t first_step = state.step;
  double communication_seconds = 0;  // in the sums over ranks (waiting for slower ranks included)
  while (state.step < c.steps) {
    const auto step_start = Clock::now();
    // Every rank reads the whole global batch, so each knows the step's target count unasked.
    int64_t step_targets = 0;
    for (size_t m = 0; m < inputs.size(); ++m) {
      loader.next(inputs[m], targets[m]);
      for (int32_t t : targets[m]) step_targets += t >= 0 ? 1 : 0;
      keep_rank_rows(inputs[m], ranks, size_t(c.batch_size * c.seq_len));
      keep_rank_rows(targets[m], ranks, size_t(c.batch_size * c.seq_len));
    }
    const StepScales scales{step_targets, step_targets > 0 ? 1.0 / double(step_targets) : 0.0,
                            1.0 / double(step_sequences)};
    objective.begin_step(state.step);
    for (size_t m = 0; m < inputs.size(); ++m) objective.accumulate(inputs[m].data(), targets[m].data(), scales);
    // Once per optimizer step, after accumulation: the gradients and loss terms of all ranks.
    const auto communication_start = Clock::now();
    std::vector<double> sums = objective.step_sums();
    ranks.sum(sums.data(), sums.size());
    for (const auto& b : buffers) ranks.sum(b.grads, b.count);
    communication_seconds += std::chrono::duration<double>(Clock::now() - communication_start).count();
    const double loss = objective.step_loss(sums, scales);
    stop_on_nonfinite(loss, "loss");
    const double grad_norm = buffers_grad_norm(buffers);
    stop_on_nonfinite(grad_norm, "gradient norm");
    if (c.grad_clip > 0 && grad_norm > c.grad_clip) scale_grads(buffers, float(c.grad_clip / (grad_norm + 1e-6)));
    const double lr = schedule.at(state.step);
    for (const auto& b : buffers)
      if (b.count > 0) b.optimizer->step(b.params, b.grads, lr);
    ++state.step;
    state.tokens_seen += step_tokens;
    result.final_loss = loss;

    const double seconds = std::chrono::duration<double>(Clock::now() - step_start).count();
    StepRecord record{state.step, loss, lr, grad_norm, double(step_tokens) / seconds, std::nullopt};
    objective.end_step(record, writes);
    const bool last = state.step == c.steps;
    if (!writes) continue;  // every rank holds the same weights; rank 0 alone evaluates and saves them
    if (setup.has_validation && ((c.eval_every > 0 && state.step % c.eval_every == 0) || last))
      record.val_loss = objective.validate(state.step);
    records.push_back(record);
    metrics << metrics_json_line(record) << std::endl;
    if (state.step % c.log_every == 0 || last) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - run_start).count();
      objective.log_step(record, c.steps, elapsed / double(state.step - first_step) * double(c.steps - state.step));
    }
    const bool save = (c.save_every > 0 && state.step % c.save_every == 0) || last;
    if (save) checkpoint();
    if (record.val_loss || save || state.step % 50 == 0) refresh_report();
  }
  if (writes) refresh_report();
  if (ranks.ranks() > 1 && state.step > first_step) {
    const double total = std::chrono::duration<double>(Clock::now() - run_start).count();
    const double steps = double(state.step - first_step);
    spdlog::info("data parallel: {} ranks, {:.1f} ms per step, {:.1f} ms of it summing over ranks ({:.1f} %)",
                 ranks.ranks(), 1e3 * total / steps, 1e3 * communication_seconds / steps,
                 100 * communication_seconds / total);
  }
  result.steps = state.step;
  return result;
}

}  // namespace retort::train

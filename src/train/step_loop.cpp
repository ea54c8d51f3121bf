#include "train/step_loop.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>

#include "train/checkpoint.h"
#include "train/gradient_buckets.h"
#include "train/loss_scaler.h"
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
// first_norm, when given, is the first buffer's norm computed elsewhere (ZeRO-1's sharded sum).
double buffers_grad_norm(const std::vector<TrainedBuffer>& buffers, std::optional<double> first_norm = std::nullopt) {
  double squares = 0;
  for (size_t i = 0; i < buffers.size(); ++i) {
    const double n = i == 0 && first_norm ? *first_norm : global_grad_norm(buffers[i].grads, buffers[i].count);
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

// distributed.reproducible: every trained buffer's gradient summed in f64, one sequence at a time.
// Each sequence's f32 gradient is the same whichever rank computes it (the same weights, kernels and
// rows), and the f64 sums over sequences, micro-batches and ranks differ from one grouping to another
// only by f64 rounding, far below the one f32 rounding at the end: so 1, 2 or 4 ranks (flat or
// hierarchical, with or without ZeRO-1) take the same optimizer step as one process.
class ExactGradients {
 public:
  explicit ExactGradients(const std::vector<TrainedBuffer>& buffers) : buffers_(buffers) {
    for (const auto& b : buffers) sums_.emplace_back(b.count, 0.0);
  }
  void clear() {
    for (auto& s : sums_) std::fill(s.begin(), s.end(), 0.0);
  }
  // Moves the gradients the objective just added (one sequence's) into the sums. Most of a large
  // vocabulary's embedding rows get no gradient from one sequence: zeros are read, not written.
  void fold() {
    for (size_t i = 0; i < buffers_.size(); ++i) {
      float* grads = buffers_[i].grads;
      double* sums = sums_[i].data();
      thread_pool().parallel_for(buffers_[i].count, 1 << 14, [&](size_t begin, size_t end) {
        for (size_t k = begin; k < end; ++k)
          if (grads[k] != 0.0f) sums[k] += double(grads[k]), grads[k] = 0.0f;
      });
    }
  }
  // Sums over ranks (in rank order) and rounds each sum to the f32 gradient once.
  void sum_over_ranks(RankGroup& ranks) {
    for (size_t i = 0; i < buffers_.size(); ++i) {
      ranks.sum(sums_[i].data(), sums_[i].size());
      std::transform(sums_[i].begin(), sums_[i].end(), buffers_[i].grads, [](double s) { return float(s); });
    }
  }

 private:
  std::vector<TrainedBuffer> buffers_;
  std::vector<std::vector<double>> sums_;
};

// This rank's rows of a global batch read into `rows` (the whole batch with one rank).
void keep_rank_rows(std::vector<int32_t>& rows, const RankGroup& ranks, size_t rows_per_rank) {
  if (ranks.ranks() == 1) return;
  const size_t first = size_t(ranks.rank()) * rows_per_rank;
  std::copy(rows.begin() + first, rows.begin() + first + rows_per_rank, rows.begin());
  rows.resize(rows_per_rank);
}

// ZeRO-1: the first trained buffer (the model) keeps its AdamW moments sharded over the ranks; the
// others (distillation's small projections) stay replicated. Shards are whole norm blocks, so the
// gradient norm adds the same block sums in the same order as unsharded: a ZeRO-1 run is bitwise
// the run without it.
class ZeroOneSharding {
 public:
  ZeroOneSharding(RankGroup& ranks, const TrainedBuffer& model) : ranks_(ranks), model_(model) {
    const size_t blocks = (model.count + kGradNormBlock - 1) / kGradNormBlock;
    shard_ = (blocks + size_t(ranks.ranks()) - 1) / size_t(ranks.ranks()) * kGradNormBlock;
    const ShardRange mine = ShardRange::of(ranks.rank(), model.count, shard_);
    model.optimizer->keep_shard(mine.begin, mine.end);
    spdlog::info("ZeRO-1: Adam moments sharded over {} ranks: {:.1f} MiB on rank 0 instead of {:.1f} MiB", ranks.ranks(),
                 double(model.optimizer->moments().size()) * sizeof(float) / (1 << 20),
                 2.0 * double(model.count) * sizeof(float) / (1 << 20));
  }
  void sum_grads() { ranks_.sum_own_shard(model_.grads, model_.count, shard_); }
  // The model's gradient norm from each rank's blocks (other ranks add exact zeros to each block).
  double model_grad_norm() {
    const size_t blocks = (model_.count + kGradNormBlock - 1) / kGradNormBlock;
    std::vector<double> squares(blocks, 0.0);
    const ShardRange mine = ShardRange::of(ranks_.rank(), model_.count, shard_);
    const size_t first = mine.begin / kGradNormBlock, last = (mine.end + kGradNormBlock - 1) / kGradNormBlock;
    grad_block_squares(model_.grads, model_.count, first, last, squares.data() + first);
    ranks_.sum(squares.data(), blocks);
    double total = 0;
    for (double s : squares) total += s;
    return std::sqrt(total);
  }
  void share_params() { ranks_.share_shards(model_.params, model_.count, shard_); }
  // Every rank's moments, [m (P) | v (P)] on rank 0 (empty elsewhere), for a checkpoint.
  std::vector<float> gather_moments() {
    const AdamW& optimizer = *model_.optimizer;
    const size_t n = size_t(ranks_.ranks()), count = model_.count;
    std::vector<float> mine(shard_), all(ranks_.writes() ? n * shard_ : 0), moments(ranks_.writes() ? 2 * count : 0);
    for (size_t which = 0; which < 2; ++which) {
      std::fill(mine.begin(), mine.end(), 0.0f);
      const float* part = optimizer.moments().data() + which * optimizer.shard_size();
      std::copy_n(part, optimizer.shard_size(), mine.data());
      ranks_.gather_to_first(mine.data(), shard_, all.data());
      if (ranks_.writes()) std::copy_n(all.data(), count, moments.data() + which * count);
    }
    return moments;
  }

 private:
  RankGroup& ranks_;
  TrainedBuffer model_;
  size_t shard_ = 0;
};

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
  const std::vector<TrainedBuffer> buffers = objective.trained_buffers();
  std::optional<ZeroOneSharding> zero;
  if (c.zero_stage == 1) {
    require(buffers.front().optimizer == setup.optimizer, ErrorKind::Internal, "ZeRO-1: the checkpointed optimizer "
            "is not the first trained buffer's");
    zero.emplace(ranks, buffers.front());
  }
  std::optional<ExactGradients> exact;
  if (c.reproducible) exact.emplace(buffers);
  std::optional<GradientBuckets> buckets;  // the model's gradients summed during the last backward
  if (c.bucket_mb > 0 && ranks.ranks() > 1 && !exact) {
    if (ranks.sums_from_any_thread()) {
      const size_t bucket_values = std::max<size_t>(1, size_t(c.bucket_mb * double(1 << 20)) / sizeof(float));
      buckets.emplace(ranks, buffers.front().grads, buffers.front().count, bucket_values);
    } else {
      spdlog::warn("distributed.bucket_mb: this MPI library cannot be called from a second thread "
                   "(MPI_THREAD_SERIALIZED); the gradients are summed after the backward pass instead");
    }
  }
  LossScaler scaler(c.mixed_precision == "fp16", c.loss_scale_initial, c.loss_scale_growth_interval, state);
  std::vector<float> gathered_moments;  // ZeRO-1: rank 0's copy of every shard, at checkpoints only
  auto checkpoint = [&] {
    state.data = loader.position();
    const float* moments = zero ? gathered_moments.data() : setup.optimizer->moments().data();
    const CheckpointContents contents{setup.model_config, setup.layout, setup.params,
                                      moments,            state,        setup.tokenizer_dir};
    result.last_checkpoint = save_checkpoint(c.output_dir, contents, c.keep_last,
                                             [&](const std::string& dir) { objective.save_state(dir); });
    spdlog::info("checkpoint {}", result.last_checkpoint);
  };
  auto stop_on_nonfinite = [&](double value, const char* what) {
    require(std::isfinite(value), ErrorKind::InvalidInput, "step {}: the {} is {}; {} stopped. Last good checkpoint: {}. {}",
            state.step + 1, what, value, objective.activity(),
            result.last_checkpoint.empty() ? std::string("none") : result.last_checkpoint, objective.nonfinite_advice());
  };

  std::vector<std::vector<int32_t>> inputs(static_cast<size_t>(c.grad_accum_steps)), targets(inputs.size());
  const int64_t step_sequences = c.grad_accum_steps * c.batch_size * ranks.ranks();
  const int64_t step_tokens = step_sequences * c.seq_len;
  const auto run_start = Clock::now();
  const int64_t first_step = state.step;
  const int64_t end_step = setup.stop_at_step > 0 ? std::min(setup.stop_at_step, c.steps) : c.steps;
  double communication_seconds = 0;  // in the sums over ranks (waiting for slower ranks included)
  while (state.step < end_step) {
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
                            1.0 / double(step_sequences), scaler.scale()};
    objective.begin_step(state.step);
    if (exact) exact->clear();
    for (size_t m = 0; m < inputs.size(); ++m) {
      if (!exact) {
        const bool overlap = buckets && m + 1 == inputs.size();  // only the last backward's gradients are final
        if (overlap) objective.set_gradient_ready([&](size_t offset, size_t count) { buckets->ready(offset, count); });
        objective.accumulate(inputs[m].data(), targets[m].data(), scales);
        if (overlap) objective.set_gradient_ready({});
        continue;
      }
      for (int64_t row = 0; row < c.batch_size; ++row) {  // the models run one sequence at a time
        objective.accumulate(inputs[m].data() + row * c.seq_len, targets[m].data() + row * c.seq_len, scales);
        exact->fold();
      }
    }
    // Once per optimizer step, after accumulation: the gradients and loss terms of all ranks. With
    // buckets, the model's are summed or being summed: wait for them before this thread calls MPI.
    const auto communication_start = Clock::now();
    if (buckets) buckets->finish();
    std::vector<double> sums = objective.step_sums();
    ranks.sum(sums.data(), sums.size());
    if (exact) {
      exact->sum_over_ranks(ranks);  // every rank's whole gradient (ZeRO-1 reads its shard of it)
    } else {
      for (size_t i = buckets ? 1 : 0; i < buffers.size(); ++i) {  // buckets: the model's are summed
        if (zero && i == 0) zero->sum_grads();
        else ranks.sum(buffers[i].grads, buffers[i].count);
      }
    }
    communication_seconds += std::chrono::duration<double>(Clock::now() - communication_start).count();
    const double loss = objective.step_loss(sums, scales);
    stop_on_nonfinite(loss, "loss");
    const double scaled_norm = zero ? buffers_grad_norm(buffers, zero->model_grad_norm()) : buffers_grad_norm(buffers);
    const double loss_scale = scaler.scale();
    const bool apply = scaler.admit_step(scaled_norm);  // false only for fp16 overflow: step skipped
    const double grad_norm = apply ? scaled_norm / loss_scale : 0.0;
    stop_on_nonfinite(grad_norm, "gradient norm");
    const double lr = schedule.at(state.step);
    if (apply) {
      // Unscaling (an exact power of two) and clipping in one pass over the gradients.
      double factor = 1.0 / loss_scale;
      if (c.grad_clip > 0 && grad_norm > c.grad_clip) factor *= c.grad_clip / (grad_norm + 1e-6);
      if (factor != 1.0) scale_grads(buffers, float(factor));
      for (const auto& b : buffers)
        if (b.count > 0) b.optimizer->step(b.params, b.grads, lr);
      if (zero) {
        const auto share_start = Clock::now();
        zero->share_params();
        communication_seconds += std::chrono::duration<double>(Clock::now() - share_start).count();
      }
    }
    ++state.step;
    state.tokens_seen += step_tokens;
    result.final_loss = loss;

    const double seconds = std::chrono::duration<double>(Clock::now() - step_start).count();
    StepRecord record{state.step, loss, lr, grad_norm, double(step_tokens) / seconds, std::nullopt, std::nullopt, false};
    if (scaler.enabled()) record.loss_scale = loss_scale, record.skipped = !apply;
    objective.end_step(record, writes);
    const bool last = state.step == end_step;
    const bool save = (c.save_every > 0 && state.step % c.save_every == 0) || last;
    if (save && zero) gathered_moments = zero->gather_moments();  // every rank sends its shard
    if (!writes) continue;  // every rank holds the same weights; rank 0 alone evaluates and saves them
    if (setup.has_validation && ((c.eval_every > 0 && state.step % c.eval_every == 0) || last))
      record.val_loss = objective.validate(state.step);
    records.push_back(record);
    metrics << metrics_json_line(record) << std::endl;
    if (state.step % c.log_every == 0 || last) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - run_start).count();
      objective.log_step(record, end_step, elapsed / double(state.step - first_step) * double(end_step - state.step));
    }
    if (save) {
      checkpoint();
      gathered_moments = {};  // released: the full moments exist only while a checkpoint is written
    }
    if (record.val_loss || save || state.step % 50 == 0) refresh_report();
  }
  if (writes) refresh_report();
  if (ranks.ranks() > 1 && state.step > first_step) {
    const double total = std::chrono::duration<double>(Clock::now() - run_start).count();
    const double steps = double(state.step - first_step);
    spdlog::info("data parallel: {} ranks, {:.1f} ms per step, {:.1f} ms of it summing over ranks ({:.1f} %){}",
                 ranks.ranks(), 1e3 * total / steps, 1e3 * communication_seconds / steps,
                 100 * communication_seconds / total,
                 buckets ? fmt::format(" after the backward; buckets of {} MiB summed during it", c.bucket_mb) : "");
  }
  result.steps = state.step;
  return result;
}

}  // namespace retort::train

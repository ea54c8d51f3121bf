#include "server/model_residency.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <utility>

#include "server/api_error.h"
#include "util/byte_size.h"
#include "util/error.h"
#include "util/log.h"
#include "util/timer.h"

namespace retort::server {

std::optional<std::vector<size_t>> models_to_unload(std::span<const ResidencyView> models, size_t wanted,
                                                    uint64_t budget_bytes) {
  uint64_t resident = 0;
  for (const auto& model : models) {
    if (model.state != Residency::Unloaded) resident += model.memory_bytes;
  }
  const uint64_t needed = resident + models[wanted].memory_bytes;
  if (needed <= budget_bytes) return std::vector<size_t>{};
  std::vector<size_t> idle;
  for (size_t i = 0; i < models.size(); ++i) {
    if (i != wanted && models[i].state == Residency::Loaded && models[i].in_flight == 0) idle.push_back(i);
  }
  std::sort(idle.begin(), idle.end(), [&](size_t a, size_t b) { return models[a].last_used < models[b].last_used; });
  std::vector<size_t> victims;
  uint64_t freed = 0;
  for (size_t i : idle) {
    if (needed - freed <= budget_bytes) break;
    victims.push_back(i);
    freed += models[i].memory_bytes;
  }
  if (needed - freed > budget_bytes) return std::nullopt;
  return victims;
}

void add_scheduler_counters(SchedulerStats& total, const SchedulerStats& more) {
  total.prompt_tokens_total += more.prompt_tokens_total;
  total.generated_tokens_total += more.generated_tokens_total;
  total.preemptions_total += more.preemptions_total;
  total.steps_total += more.steps_total;
  total.prefix_cache_query_tokens_total += more.prefix_cache_query_tokens_total;
  total.prefix_cache_hit_tokens_total += more.prefix_cache_hit_tokens_total;
  total.speculation += more.speculation;
}

// ---- ModelLease

ModelLease ModelLease::pinned(const ServingModel& model) { return ModelLease(nullptr, 0, &model); }

ModelLease::ModelLease(ModelLease&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)), index_(other.index_), model_(other.model_) {}

ModelLease& ModelLease::operator=(ModelLease&& other) noexcept {
  if (this != &other) {
    release();
    owner_ = std::exchange(other.owner_, nullptr);
    index_ = other.index_;
    model_ = other.model_;
  }
  return *this;
}

ModelLease::~ModelLease() { release(); }

void ModelLease::release() {
  if (owner_ != nullptr) std::exchange(owner_, nullptr)->release(index_);
}

// ---- ModelResidency

struct ModelResidency::Slot {
  Residency state = Residency::Unloaded;
  std::unique_ptr<LoadedEngine> engine;  // while Loaded (and Unloading, until the unloader takes it)
  int64_t in_flight = 0;
  uint64_t last_used = 0;
  SchedulerStats earlier_loads;  // counters of the loads before this one
  uint64_t loads = 0;
  uint64_t unloads = 0;
  double load_seconds = 0;
};

ModelResidency::ModelResidency(std::vector<OnDemandModel> models, uint64_t budget_bytes)
    : models_(std::move(models)), budget_bytes_(budget_bytes), slots_(models_.size()) {
  for (const auto& model : models_) {
    require(model.memory_bytes <= budget_bytes_, ErrorKind::InvalidInput,
            "model '{}' needs {} ({} bytes: weights and KV cache) but --max-memory is {} ({} bytes); raise "
            "--max-memory, or lower --kv-tokens to shrink its KV cache",
            model.name, format_byte_size(model.memory_bytes), model.memory_bytes, format_byte_size(budget_bytes_),
            budget_bytes_);
  }
}

ModelResidency::~ModelResidency() {
  std::vector<std::unique_ptr<LoadedEngine>> engines;
  {
    std::lock_guard lock(mutex_);
    for (auto& slot : slots_) engines.push_back(std::move(slot.engine));
  }
  engines.clear();  // outside the lock: each joins its scheduler's thread
}

size_t ModelResidency::index_of(const std::string& name) const {
  for (size_t i = 0; i < models_.size(); ++i) {
    if (models_[i].name == name) return i;
  }
  fail(ErrorKind::Internal, "no served model is named '{}' (the router should have refused it)", name);
}

std::vector<ResidencyView> ModelResidency::views() const {
  std::vector<ResidencyView> views;
  for (size_t i = 0; i < slots_.size(); ++i) {
    views.push_back({models_[i].memory_bytes, slots_[i].state, slots_[i].in_flight, slots_[i].last_used});
  }
  return views;
}

ModelLease ModelResidency::acquire(const std::string& name, SteadyTime deadline) {
  const size_t index = index_of(name);
  std::unique_lock lock(mutex_);
  for (;;) {
    if (stopping_) throw ApiError(503, "the server is shutting down");
    Slot& slot = slots_[index];
    if (slot.state == Residency::Loaded) {
      ++slot.in_flight;
      slot.last_used = ++tick_;
      return ModelLease(this, index, &slot.engine->serving());
    }
    if (slot.state == Residency::Unloaded) {
      const std::vector<ResidencyView> current = views();
      if (auto victims = models_to_unload(current, index, budget_bytes_)) {
        unload_then_load(lock, index, *victims);
        continue;  // Loaded now, unless the server began shutting down meanwhile
      }
    }
    // Loading or unloading elsewhere, or no room yet: any lease returned or state change may help.
    if (changed_.wait_until(lock, deadline) == std::cv_status::timeout && std::chrono::steady_clock::now() >= deadline) {
      if (slot.state == Residency::Unloaded) throw ApiError(503, busy_message(index));
      throw ApiError(503, fmt::format("model '{}' is still {}; retry shortly", name,
                                      slot.state == Residency::Loading ? "loading" : "unloading"));
    }
  }
}

void ModelResidency::unload_then_load(std::unique_lock<std::mutex>& lock, size_t index,
                                      const std::vector<size_t>& victims) {
  std::vector<std::unique_ptr<LoadedEngine>> unloading;
  for (size_t victim : victims) {
    Slot& slot = slots_[victim];
    // Idle (no lease), so its counters are final: keep them for when it is loaded again.
    if (const Scheduler* scheduler = slot.engine->serving().scheduler) {
      add_scheduler_counters(slot.earlier_loads, scheduler->stats());
    }
    slot.state = Residency::Unloading;
    unloading.push_back(std::move(slot.engine));
  }
  slots_[index].state = Residency::Loading;
  lock.unlock();
  for (size_t i = 0; i < victims.size(); ++i) {
    spdlog::info("unloading model '{}' ({}) to make room for '{}'", models_[victims[i]].name,
                 format_byte_size(models_[victims[i]].memory_bytes), models_[index].name);
    unloading[i].reset();  // stops its scheduler (nothing in flight) and frees its memory
  }
  lock.lock();
  for (size_t victim : victims) {
    slots_[victim].state = Residency::Unloaded;
    ++slots_[victim].unloads;
  }
  lock.unlock();
  changed_.notify_all();  // their requests may load them again, elsewhere in the budget

  Timer timer;
  std::unique_ptr<LoadedEngine> engine;
  std::string error = "the loader returned no model";  // replaced by the loader's own message, if any
  try {
    spdlog::info("loading model '{}' ({})", models_[index].name, format_byte_size(models_[index].memory_bytes));
    engine = models_[index].load();
  } catch (const std::exception& e) {
    error = e.what();
  }
  lock.lock();
  Slot& slot = slots_[index];
  if (engine) {
    slot.engine = std::move(engine);
    slot.state = Residency::Loaded;
    ++slot.loads;
    slot.load_seconds += timer.seconds();
  } else {
    slot.state = Residency::Unloaded;
  }
  changed_.notify_all();
  if (slot.state != Residency::Loaded) {
    throw ApiError(500, fmt::format("cannot load model '{}': {}", models_[index].name, error));
  }
}

std::string ModelResidency::busy_message(size_t index) const {
  std::string holders;
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].state == Residency::Unloaded) continue;
    holders += fmt::format("{}'{}' {} ({} requests)", holders.empty() ? "" : ", ", models_[i].name,
                           format_byte_size(models_[i].memory_bytes), slots_[i].in_flight);
  }
  return fmt::format("model '{}' needs {} and the memory budget of {} is held by models still serving requests: {}; "
                     "retry when they finish, or start the server with a larger --max-memory",
                     models_[index].name, format_byte_size(models_[index].memory_bytes),
                     format_byte_size(budget_bytes_), holders);
}

void ModelResidency::release(size_t index) {
  {
    std::lock_guard lock(mutex_);
    --slots_[index].in_flight;
    slots_[index].last_used = ++tick_;
  }
  changed_.notify_all();
}

void ModelResidency::shutdown(std::chrono::milliseconds grace) {
  std::vector<Scheduler*> schedulers;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (const auto& slot : slots_) {
      if (slot.state == Residency::Loaded && slot.engine->serving().scheduler != nullptr) {
        schedulers.push_back(slot.engine->serving().scheduler);
      }
    }
  }
  changed_.notify_all();
  // Loaded models stay loaded from here on (acquire refuses before it would unload), so these
  // schedulers outlive the calls. One grace period for all: each gets what is left of it.
  const auto deadline = std::chrono::steady_clock::now() + grace;
  for (Scheduler* scheduler : schedulers) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    scheduler->shutdown(std::max(left, std::chrono::milliseconds(0)));
  }
}

bool ModelResidency::loaded(size_t index) const {
  std::lock_guard lock(mutex_);
  return slots_[index].state == Residency::Loaded;
}

SchedulerStats ModelResidency::engine_stats(size_t index) const {
  std::lock_guard lock(mutex_);
  const Slot& slot = slots_[index];
  SchedulerStats stats;
  if (slot.state == Residency::Loaded && slot.engine->serving().scheduler != nullptr) {
    stats = slot.engine->serving().scheduler->stats();
  }
  add_scheduler_counters(stats, slot.earlier_loads);
  return stats;
}

std::vector<ModelResidencyStats> ModelResidency::residency_stats() const {
  std::lock_guard lock(mutex_);
  std::vector<ModelResidencyStats> stats;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& slot = slots_[i];
    stats.push_back({models_[i].name, slot.state == Residency::Loaded, models_[i].memory_bytes, slot.in_flight,
                     slot.loads, slot.unloads, slot.load_seconds});
  }
  return stats;
}

}  // namespace retort::server

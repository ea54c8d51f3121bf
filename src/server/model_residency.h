#pragma once
// Several models under one memory budget (`retort serve --max-memory`). A model is loaded when a
// request first asks for it; when loading it would pass the budget, the least recently used models
// that no request holds are unloaded first (their schedulers stopped, their memory unmapped).
//
// A request holds its model through a ModelLease from before its prompt is built until its response
// is done, so a model is never unloaded under a request. A request for a model that is loading or
// unloading waits for that to finish (two requests for an unloaded model cause one load); one that
// could only make room by unloading busy models waits for them to go idle, up to its deadline, and
// then gets a 503 that says which models hold the memory.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/scheduler.h"
#include "server/http_server.h"
#include "server/metrics.h"

namespace retort::server {

// A loaded model as the server uses it; destroying it stops its scheduler and frees its memory.
class LoadedEngine {
 public:
  virtual ~LoadedEngine() = default;
  virtual const ServingModel& serving() const = 0;
};

// A configured model, known by its estimated size until a request loads it.
struct OnDemandModel {
  std::string name;
  uint64_t memory_bytes = 0;  // estimated resident cost once loaded: weights + KV cache
  int64_t context = 0;        // positions one request may use (what /v1/models reports while unloaded)
  // Called on a request's thread without any lock held, never twice at once for the same model.
  // Throws retort::Error when the model cannot be loaded.
  std::function<std::unique_ptr<LoadedEngine>()> load;
};

enum class Residency { Unloaded, Loading, Loaded, Unloading };

// What the unload policy sees of one model.
struct ResidencyView {
  uint64_t memory_bytes = 0;
  Residency state = Residency::Unloaded;
  int64_t in_flight = 0;   // leases held: requests being prepared or answered
  uint64_t last_used = 0;  // tick of the last lease taken or returned; smaller is longer ago
};

// The models to unload, least recently used first, so that `wanted` fits in `budget_bytes` beside
// those that stay: empty when it fits already, nullopt when only busy models (or ones loading or
// unloading) hold the memory it needs. A model loading or unloading counts as resident: its memory
// is taken until that finishes.
std::optional<std::vector<size_t>> models_to_unload(std::span<const ResidencyView> models, size_t wanted,
                                                    uint64_t budget_bytes);

class ModelResidency;

// A request's hold on a loaded model: while it lives, the model is not unloaded.
class ModelLease {
 public:
  ModelLease() = default;
  // A model loaded for the server's whole life (no --max-memory): nothing to return.
  static ModelLease pinned(const ServingModel& model);
  ModelLease(ModelLease&& other) noexcept;
  ModelLease& operator=(ModelLease&& other) noexcept;
  ModelLease(const ModelLease&) = delete;
  ModelLease& operator=(const ModelLease&) = delete;
  ~ModelLease();

  const ServingModel& model() const { return *model_; }

 private:
  friend class ModelResidency;
  ModelLease(ModelResidency* owner, size_t index, const ServingModel* model)
      : owner_(owner), index_(index), model_(model) {}
  void release();

  ModelResidency* owner_ = nullptr;  // null: pinned or moved from
  size_t index_ = 0;
  const ServingModel* model_ = nullptr;
};

class ModelResidency {
 public:
  // Throws retort::Error (InvalidInput) when one model alone is larger than the budget, saying both
  // sizes. Nothing is loaded yet.
  ModelResidency(std::vector<OnDemandModel> models, uint64_t budget_bytes);
  // Unloads every model; the owner makes sure no lease outlives it (the HTTP threads are joined).
  ~ModelResidency();
  ModelResidency(const ModelResidency&) = delete;
  ModelResidency& operator=(const ModelResidency&) = delete;

  // The model named `name` (one of the configured names), loaded and held. Waits while it loads or
  // unloads elsewhere, or while only busy models could make room, until `deadline`; then throws
  // ApiError 503. A load that fails is a 500 with the loader's message (a later request tries again).
  ModelLease acquire(const std::string& name, SteadyTime deadline);

  // New acquires get 503 from now on; the loaded models' schedulers finish what is in flight for up
  // to `grace` (together), then cancel the rest.
  void shutdown(std::chrono::milliseconds grace);

  const std::vector<OnDemandModel>& models() const { return models_; }
  // The position of the model named `name` in models(); throws retort::Error (Internal) when none is.
  size_t index_of(const std::string& name) const;
  uint64_t budget_bytes() const { return budget_bytes_; }
  bool loaded(size_t index) const;
  // The scheduler's numbers while loaded (zero gauges otherwise); counters include earlier loads.
  SchedulerStats engine_stats(size_t index) const;
  std::vector<ModelResidencyStats> residency_stats() const;

 private:
  friend class ModelLease;
  struct Slot;
  void release(size_t index);
  std::vector<ResidencyView> views() const;  // under mutex_
  // Unloads `victims`, then loads `index`, with the lock released meanwhile; on return (lock held)
  // the model is Loaded, or Unloaded again after throwing ApiError 500.
  void unload_then_load(std::unique_lock<std::mutex>& lock, size_t index, const std::vector<size_t>& victims);
  std::string busy_message(size_t index) const;  // under mutex_

  std::vector<OnDemandModel> models_;
  uint64_t budget_bytes_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;  // a model's state or lease count changed, or shutdown began
  std::vector<Slot> slots_;          // one per model, under mutex_
  uint64_t tick_ = 0;
  bool stopping_ = false;
};

// Adds the counters of `more` (tokens, steps, preemptions, prefix cache, speculation) to `total`;
// gauges are left alone. A model's counters so continue across an unload and a reload.
void add_scheduler_counters(SchedulerStats& total, const SchedulerStats& more);

}  // namespace retort::server

// Models under a memory budget (retort serve --max-memory): which idle models the policy unloads
// and in what order, that busy ones never are, and the residency's concurrency with planted engines
// whose sizes are known: one load for simultaneous requests, waits bounded by the deadline, memory
// never past the budget, and the metrics it renders.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <random>
#include <thread>

#include "server/api_error.h"
#include "server/metrics.h"
#include "server/model_residency.h"
#include "util/byte_size.h"
#include "util/error.h"

namespace retort::server {
namespace {

using namespace std::chrono_literals;

ResidencyView loaded(uint64_t bytes, uint64_t last_used, int64_t in_flight = 0) {
  return {bytes, Residency::Loaded, in_flight, last_used};
}
ResidencyView unloaded(uint64_t bytes) { return {bytes, Residency::Unloaded, 0, 0}; }

TEST(ModelsToUnload, NothingWhenTheModelFitsBesideTheLoadedOnes) {
  const std::vector<ResidencyView> models = {loaded(4, 1), unloaded(5)};
  EXPECT_EQ(models_to_unload(models, 1, 10), std::vector<size_t>{});
}

TEST(ModelsToUnload, TheLeastRecentlyUsedIdleModelGoesFirst) {
  // Used at ticks 30, 10, 20: the model used at tick 10 is unloaded, and only it (its 4 suffice).
  const std::vector<ResidencyView> models = {loaded(4, 30), loaded(4, 10), loaded(4, 20), unloaded(4)};
  EXPECT_EQ(models_to_unload(models, 3, 12), std::vector<size_t>{1});
  // Needing 8 more takes the two oldest, oldest first.
  const std::vector<ResidencyView> bigger = {loaded(4, 30), loaded(4, 10), loaded(4, 20), unloaded(8)};
  EXPECT_EQ(models_to_unload(bigger, 3, 12), (std::vector<size_t>{1, 2}));
}

TEST(ModelsToUnload, BusyModelsAreNeverUnloadedEvenWhenOldest) {
  const std::vector<ResidencyView> models = {loaded(6, 1, /*in_flight=*/1), loaded(3, 5), unloaded(4)};
  // The oldest is busy: the newer idle one goes, and it is enough (6 + 4 <= 10).
  EXPECT_EQ(models_to_unload(models, 2, 10), std::vector<size_t>{1});
  // When only unloading the busy one would make room, nothing is unloaded: the request waits.
  const std::vector<ResidencyView> too_big = {loaded(6, 1, 2), loaded(3, 5), unloaded(5)};
  EXPECT_EQ(models_to_unload(too_big, 2, 10), std::nullopt);
}

TEST(ModelsToUnload, LoadingAndUnloadingModelsHoldTheirMemoryAndAreNotVictims) {
  const std::vector<ResidencyView> models = {{6, Residency::Loading, 0, 1}, {3, Residency::Unloading, 0, 2}, unloaded(2)};
  EXPECT_EQ(models_to_unload(models, 2, 10), std::nullopt);
  EXPECT_EQ(models_to_unload(models, 2, 11), std::vector<size_t>{});
}

// Planted engines: each records its size in a shared ledger while it exists, so a test can see what
// is in memory and the most that ever was.
struct MemoryLedger {
  std::mutex mutex;
  uint64_t live_bytes = 0;
  uint64_t peak_bytes = 0;
  std::map<std::string, int> loads;
  std::map<std::string, int> live;
};

class PlantedEngine : public LoadedEngine {
 public:
  PlantedEngine(MemoryLedger& ledger, std::string name, uint64_t bytes, std::chrono::milliseconds unload_time)
      : ledger_(ledger), bytes_(bytes), unload_time_(unload_time) {
    model_.model_name = std::move(name);
    std::lock_guard lock(ledger_.mutex);
    ledger_.live_bytes += bytes_;
    ledger_.peak_bytes = std::max(ledger_.peak_bytes, ledger_.live_bytes);
    ++ledger_.loads[model_.model_name];
    ++ledger_.live[model_.model_name];
  }
  ~PlantedEngine() override {
    std::this_thread::sleep_for(unload_time_);
    std::lock_guard lock(ledger_.mutex);
    ledger_.live_bytes -= bytes_;
    --ledger_.live[model_.model_name];
  }
  const ServingModel& serving() const override { return model_; }

 private:
  MemoryLedger& ledger_;
  uint64_t bytes_;
  std::chrono::milliseconds unload_time_;
  ServingModel model_;
};

struct PlantedModel {
  std::string name;
  uint64_t bytes;
  std::chrono::milliseconds load_time = 0ms;
  std::chrono::milliseconds unload_time = 0ms;
};

ModelResidency planted_residency(MemoryLedger& ledger, const std::vector<PlantedModel>& models, uint64_t budget,
                                 std::atomic<bool>* fail_loads = nullptr) {
  std::vector<OnDemandModel> on_demand;
  for (const auto& model : models) {
    on_demand.push_back({model.name, model.bytes, 512, [&ledger, model, fail_loads]() -> std::unique_ptr<LoadedEngine> {
                           std::this_thread::sleep_for(model.load_time);
                           if (fail_loads != nullptr && fail_loads->load()) fail(ErrorKind::Io, "the disk is gone");
                           return std::make_unique<PlantedEngine>(ledger, model.name, model.bytes, model.unload_time);
                         }});
  }
  return ModelResidency(std::move(on_demand), budget);
}

SteadyTime in(std::chrono::milliseconds wait) { return std::chrono::steady_clock::now() + wait; }

TEST(ModelResidency, LoadsOnFirstUseAndUnloadsTheIdleModelToMakeRoom) {
  MemoryLedger ledger;
  ModelResidency residency = planted_residency(ledger, {{"a", 6}, {"b", 6}}, 10);
  EXPECT_FALSE(residency.loaded(0));
  EXPECT_EQ(ledger.live_bytes, 0u);
  {
    ModelLease a = residency.acquire("a", in(1s));
    EXPECT_EQ(a.model().model_name, "a");
    EXPECT_TRUE(residency.loaded(0));
  }
  EXPECT_TRUE(residency.loaded(0));  // stays loaded while nothing needs its memory
  { ModelLease b = residency.acquire("b", in(1s)); }
  EXPECT_FALSE(residency.loaded(0));
  EXPECT_TRUE(residency.loaded(1));
  EXPECT_EQ(ledger.live["a"], 0) << "the unloaded engine was destroyed";
  EXPECT_EQ(ledger.live_bytes, 6u);
  const auto stats = residency.residency_stats();
  EXPECT_EQ(stats[0].loads, 1u);
  EXPECT_EQ(stats[0].unloads, 1u);
  EXPECT_EQ(stats[1].loads, 1u);
  EXPECT_EQ(stats[1].unloads, 0u);
}

TEST(ModelResidency, TheLeastRecentlyUsedIdleModelIsUnloaded) {
  MemoryLedger ledger;
  ModelResidency residency = planted_residency(ledger, {{"a", 4}, {"b", 4}, {"c", 4}}, 8);
  { ModelLease a = residency.acquire("a", in(1s)); }
  { ModelLease b = residency.acquire("b", in(1s)); }
  { ModelLease a = residency.acquire("a", in(1s)); }  // b is now the least recently used
  { ModelLease c = residency.acquire("c", in(1s)); }
  EXPECT_TRUE(residency.loaded(0));
  EXPECT_FALSE(residency.loaded(1));
  EXPECT_TRUE(residency.loaded(2));
}

TEST(ModelResidency, ABusyModelIsNotUnloadedAndTheOtherRequestGetsA503AtItsDeadline) {
  MemoryLedger ledger;
  ModelResidency residency = planted_residency(ledger, {{"a", 6}, {"b", 6}}, 10);
  ModelLease a = residency.acquire("a", in(1s));
  const auto started = std::chrono::steady_clock::now();
  try {
    residency.acquire("b", in(150ms));
    FAIL() << "b was loaded while a was busy";
  } catch (const ApiError& error) {
    EXPECT_EQ(error.status(), 503);
    EXPECT_NE(std::string(error.what()).find("model 'b' needs 6 B"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("'a' 6 B (1 requests)"), std::string::npos) << error.what();
  }
  EXPECT_GE(std::chrono::steady_clock::now() - started, 150ms);
  EXPECT_TRUE(residency.loaded(0));
  EXPECT_EQ(a.model().model_name, "a");
}

TEST(ModelResidency, AWaitingRequestLoadsItsModelOnceTheBusyOneIsReturned) {
  MemoryLedger ledger;
  ModelResidency residency = planted_residency(ledger, {{"a", 6}, {"b", 6}}, 10);
  auto a = std::make_unique<ModelLease>(residency.acquire("a", in(1s)));
  auto b = std::async(std::launch::async, [&] { return residency.acquire("b", in(10s)).model().model_name; });
  EXPECT_EQ(b.wait_for(200ms), std::future_status::timeout) << "b did not wait for a";
  EXPECT_TRUE(residency.loaded(0));
  a.reset();
  EXPECT_EQ(b.get(), "b");
  EXPECT_FALSE(residency.loaded(0));
  EXPECT_LE(ledger.peak_bytes, 10u);
}

TEST(ModelResidency, SimultaneousRequestsForAnUnloadedModelLoadItOnce) {
  MemoryLedger ledger;
  ModelResidency residency = planted_residency(ledger, {{"a", 6, 200ms}}, 10);
  std::vector<std::future<std::string>> requests;
  for (int i = 0; i < 4; ++i) {
    requests.push_back(std::async(std::launch::async, [&] { return residency.acquire("a", in(5s)).model().model_name; }));
  }
  for (auto& request : requests) EXPECT_EQ(request.get(), "a");
  EXPECT_EQ(ledger.loads["a"], 1);
}

TEST(ModelResidency, ARequestArrivingWhileItsModelUnloadsWaitsAndReloadsIt) {
  MemoryLedger ledger;
  ModelResidency residency = planted_residency(ledger, {{"a", 6, 0ms, 300ms}, {"b", 6}}, 10);
  { ModelLease a = residency.acquire("a", in(1s)); }
  auto b = std::async(std::launch::async, [&] { ModelLease lease = residency.acquire("b", in(5s)); });
  std::this_thread::sleep_for(100ms);  // a is unloading now (its engine takes 300 ms to go)
  ModelLease a_again = residency.acquire("a", in(5s));
  b.get();
  EXPECT_EQ(a_again.model().model_name, "a");
  EXPECT_EQ(ledger.loads["a"], 2);
  EXPECT_EQ(ledger.live["a"], 1);
  EXPECT_LE(ledger.peak_bytes, 10u);
}

TEST(ModelResidency, ManyRequestsNeverHoldMoreThanTheBudget) {
  MemoryLedger ledger;
  ModelResidency residency =
      planted_residency(ledger, {{"a", 5, 2ms, 1ms}, {"b", 4, 1ms, 2ms}, {"c", 3, 3ms, 0ms}}, 9);
  std::vector<std::thread> clients;
  std::atomic<int> served{0};
  for (int client = 0; client < 6; ++client) {
    clients.emplace_back([&, client] {
      std::mt19937 rng(static_cast<unsigned>(client));
      for (int request = 0; request < 25; ++request) {
        const std::string name(1, static_cast<char>('a' + rng() % 3));
        ModelLease lease = residency.acquire(name, in(20s));
        EXPECT_EQ(lease.model().model_name, name);
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
        ++served;
      }
    });
  }
  for (auto& client : clients) client.join();
  EXPECT_EQ(served.load(), 150);
  EXPECT_LE(ledger.peak_bytes, 9u);
  uint64_t unloads = 0;
  for (const auto& model : residency.residency_stats()) unloads += model.unloads;
  EXPECT_GT(unloads, 0u) << "the clients never needed a model that did not fit";
}

TEST(ModelResidency, AModelLargerThanTheBudgetIsRefusedWithBothSizes) {
  MemoryLedger ledger;
  try {
    planted_residency(ledger, {{"small", 1 << 20}, {"huge", uint64_t{3} << 30}}, uint64_t{2} << 30);
    FAIL() << "a model over the budget was accepted";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("model 'huge' needs 3.00 GiB"), std::string::npos) << message;
    EXPECT_NE(message.find("--max-memory is 2.00 GiB"), std::string::npos) << message;
  }
}

TEST(ModelResidency, AFailedLoadIsA500AndALaterRequestLoadsAgain) {
  MemoryLedger ledger;
  std::atomic<bool> fail_loads{true};
  ModelResidency residency = planted_residency(ledger, {{"a", 6}}, 10, &fail_loads);
  try {
    residency.acquire("a", in(1s));
    FAIL() << "the failed load was not reported";
  } catch (const ApiError& error) {
    EXPECT_EQ(error.status(), 500);
    EXPECT_EQ(std::string(error.what()), "cannot load model 'a': the disk is gone");
  }
  EXPECT_FALSE(residency.loaded(0));
  fail_loads = false;
  EXPECT_EQ(residency.acquire("a", in(1s)).model().model_name, "a");
}

TEST(ModelResidency, AfterShutdownBeginsRequestsGetA503) {
  MemoryLedger ledger;
  ModelResidency residency = planted_residency(ledger, {{"a", 6}}, 10);
  { ModelLease a = residency.acquire("a", in(1s)); }
  residency.shutdown(0ms);
  try {
    residency.acquire("a", in(1s));
    FAIL();
  } catch (const ApiError& error) {
    EXPECT_EQ(error.status(), 503);
  }
}

TEST(ModelResidencyMetrics, EveryModelIsLabelledWithItsResidency) {
  const std::string text = render_residency({{"a", true, 1024, 2, 3, 1, 0.5}, {"b", false, 2048, 0, 0, 0, 0}}, 4096);
  EXPECT_NE(text.find("retort_memory_budget_bytes 4096\n"), std::string::npos) << text;
  EXPECT_NE(text.find("retort_model_loaded{model=\"a\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("retort_model_loaded{model=\"b\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("retort_model_memory_bytes{model=\"b\"} 2048\n"), std::string::npos) << text;
  EXPECT_NE(text.find("retort_model_requests_in_flight{model=\"a\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("retort_model_loads_total{model=\"a\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("retort_model_unloads_total{model=\"a\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("retort_model_load_seconds_total{model=\"a\"} 0.5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE retort_model_loads_total counter\n"), std::string::npos) << text;
}

TEST(ModelResidencyMetrics, CountersCarryOverAnUnloadAndGaugesDoNot) {
  SchedulerStats earlier;
  earlier.generated_tokens_total = 40;
  earlier.prompt_tokens_total = 7;
  earlier.speculation.accepted = 3;
  earlier.running = 2;
  SchedulerStats now;
  now.generated_tokens_total = 5;
  now.kv_blocks_total = 64;
  add_scheduler_counters(now, earlier);
  EXPECT_EQ(now.generated_tokens_total, 45);
  EXPECT_EQ(now.prompt_tokens_total, 7);
  EXPECT_EQ(now.speculation.accepted, 3);
  EXPECT_EQ(now.running, 0);
  EXPECT_EQ(now.kv_blocks_total, 64);
}

TEST(ByteSize, UnitsArePowersOf1024AndAPlainNumberIsBytes) {
  EXPECT_EQ(parse_byte_size("6GiB", "--max-memory"), uint64_t{6} << 30);
  EXPECT_EQ(parse_byte_size("512 MiB", "--max-memory"), uint64_t{512} << 20);
  EXPECT_EQ(parse_byte_size("1.5gib", "--max-memory"), uint64_t{3} << 29);
  EXPECT_EQ(parse_byte_size("64KiB", "--max-memory"), uint64_t{64} << 10);
  EXPECT_EQ(parse_byte_size("1TiB", "--max-memory"), uint64_t{1} << 40);
  EXPECT_EQ(parse_byte_size("1048576", "--max-memory"), uint64_t{1} << 20);
  EXPECT_EQ(parse_byte_size("100B", "--max-memory"), 100u);
}

TEST(ByteSize, AnythingElseIsRefusedSayingWhatIsAccepted) {
  for (const char* text : {"", "GiB", "6GB", "six GiB", "-1GiB", "1.2.3MiB", "0", "0.1B", ".5GiB", "99999999TiB"}) {
    try {
      parse_byte_size(text, "--max-memory");
      ADD_FAILURE() << "'" << text << "' was accepted";
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find("--max-memory"), std::string::npos) << error.what();
    }
  }
  EXPECT_EQ(format_byte_size(100), "100 B");
  EXPECT_EQ(format_byte_size(uint64_t{3} << 19), "1.5 MiB");
  EXPECT_EQ(format_byte_size(uint64_t{6} << 30), "6.00 GiB");
}

}  // namespace
}  // namespace retort::server

// Several models in one `retort serve`: which model a request's `model` field picks, the 404s for
// a missing or unknown name, the names a configuration may use, and /metrics labelled per model.
#include <gtest/gtest.h>

#include "server/api_error.h"
#include "server/metrics.h"
#include "server/served_models.h"
#include "util/error.h"

namespace retort::server {
namespace {

ServedModels served(std::vector<std::string> names) {
  std::vector<NamedModel> models;
  for (auto& name : names) models.push_back({name, ServingModel{}});
  return ServedModels(std::move(models));
}

// The status and message route() throws for `requested`.
std::pair<int, std::string> route_error(const ServedModels& models, const std::string& requested) {
  try {
    models.route(requested);
  } catch (const ApiError& error) {
    return {error.status(), error.what()};
  }
  return {0, ""};
}

TEST(ServedModelsRouting, OneModelTakesAnAbsentNameAndKeepsItsOld404) {
  const ServedModels one = served({"tiny"});
  EXPECT_EQ(one.route("").name, "tiny");
  EXPECT_EQ(one.route("tiny").name, "tiny");
  const auto [status, message] = route_error(one, "gpt-4");
  EXPECT_EQ(status, 404);
  EXPECT_EQ(message, "the model 'gpt-4' does not exist; this server serves 'tiny'");
}

TEST(ServedModelsRouting, SeveralModelsAreChosenByName) {
  const ServedModels two = served({"qwen", "llama"});
  EXPECT_EQ(two.route("qwen").name, "qwen");
  EXPECT_EQ(two.route("llama").name, "llama");
  EXPECT_EQ(two.quoted_names(), "'qwen', 'llama'");
}

TEST(ServedModelsRouting, SeveralModelsRefuseAnAbsentOrUnknownNameListingTheServedOnes) {
  const ServedModels two = served({"qwen", "llama"});
  const auto [absent_status, absent] = route_error(two, "");
  EXPECT_EQ(absent_status, 404);
  EXPECT_NE(absent.find("names no model"), std::string::npos) << absent;
  EXPECT_NE(absent.find("'qwen', 'llama'"), std::string::npos) << absent;
  const auto [unknown_status, unknown] = route_error(two, "mistral");
  EXPECT_EQ(unknown_status, 404);
  EXPECT_EQ(unknown, "the model 'mistral' does not exist; this server serves 'qwen', 'llama'");
}

TEST(ServedModelsRouting, NothingAttachedYetIsA503) {
  EXPECT_EQ(route_error(ServedModels(), "").first, 503);
}

TEST(ServedModelsNames, EmptyOrRepeatedNamesAreRefusedSayingWhich) {
  EXPECT_NO_THROW(check_model_names({"a", "b"}));
  try {
    check_model_names({"a", "b", "a"});
    FAIL() << "a repeated name was accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("two models are named 'a'"), std::string::npos) << error.what();
  }
  try {
    served({"a", ""});
    FAIL() << "an empty name was accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("model 2 of 2 has an empty name"), std::string::npos) << error.what();
  }
}

TEST(ServedModelsMetrics, SeveralModelsLabelEachEngineSampleAndOneModelStaysUnlabelled) {
  ServerMetrics metrics;
  SchedulerStats qwen;
  qwen.queued = 3;
  qwen.generated_tokens_total = 40;
  SchedulerStats llama;
  llama.running = 2;
  const std::string two = metrics.render_models({{"qwen", qwen}, {"llama", llama}}, true);
  EXPECT_NE(two.find("retort_queue_depth{model=\"qwen\"} 3\n"), std::string::npos) << two;
  EXPECT_NE(two.find("retort_queue_depth{model=\"llama\"} 0\n"), std::string::npos);
  EXPECT_NE(two.find("retort_running_sequences{model=\"llama\"} 2\n"), std::string::npos);
  EXPECT_NE(two.find("retort_generated_tokens_total{model=\"qwen\"} 40\n"), std::string::npos);
  // One HELP/TYPE header per family, whatever the number of models.
  size_t headers = 0;
  for (size_t at = two.find("# TYPE retort_queue_depth "); at != std::string::npos;
       at = two.find("# TYPE retort_queue_depth ", at + 1)) {
    ++headers;
  }
  EXPECT_EQ(headers, 1u);

  const std::string one = metrics.render_models({{"qwen", qwen}}, true);
  EXPECT_NE(one.find("retort_queue_depth 3\n"), std::string::npos) << one;
  EXPECT_EQ(one.find("model=\""), std::string::npos);
  EXPECT_EQ(one, metrics.render(qwen, true));
}

}  // namespace
}  // namespace retort::server

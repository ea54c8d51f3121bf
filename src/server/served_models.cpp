#include "server/served_models.h"

#include <fmt/format.h>

#include <set>

#include "server/api_error.h"
#include "util/error.h"

namespace retort::server {

void check_model_names(const std::vector<std::string>& names) {
  std::set<std::string> seen;
  for (size_t i = 0; i < names.size(); ++i) {
    require(!names[i].empty(), ErrorKind::InvalidInput,
            "model {} of {} has an empty name; give each model a name clients can send (--model NAME=PATH)", i + 1,
            names.size());
    require(seen.insert(names[i]).second, ErrorKind::InvalidInput,
            "two models are named '{}'; each served model needs its own name (--model NAME=PATH, or --model-name "
            "for the MODEL argument)",
            names[i]);
  }
}

ServedModels::ServedModels(std::vector<NamedModel> models) : models_(std::move(models)) {
  std::vector<std::string> names;
  for (const auto& model : models_) names.push_back(model.name);
  check_model_names(names);
}

const NamedModel* ServedModels::find(const std::string& name) const {
  for (const auto& model : models_) {
    if (model.name == name) return &model;
  }
  return nullptr;
}

std::string ServedModels::quoted_names() const {
  std::string out;
  for (const auto& model : models_) out += (out.empty() ? "'" : ", '") + model.name + "'";
  return out;
}

const NamedModel& ServedModels::route(const std::string& requested) const {
  if (models_.empty()) throw ApiError(503, "the model is still loading; retry shortly");
  // One model: the field is optional, as it has been since the server served one model.
  if (models_.size() == 1 && (requested.empty() || requested == models_[0].name)) return models_[0];
  if (const NamedModel* found = requested.empty() ? nullptr : find(requested)) return *found;
  if (requested.empty()) {
    throw ApiError(404, fmt::format("the request names no model, and this server serves several: {}; set \"model\" "
                                    "to one of them",
                                    quoted_names()),
                   "model", "model_not_found");
  }
  // With one model this is word for word the message a single-model server always gave.
  throw ApiError(404, fmt::format("the model '{}' does not exist; this server serves {}", requested, quoted_names()),
                 "model", "model_not_found");
}

}  // namespace retort::server

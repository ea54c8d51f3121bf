#pragma once
// The models one `retort serve` answers for, by the name clients put in a request's `model`.
// With one model the name may be left out (and a wrong one gets the 404 it always got); with
// several, the name picks the model and a missing or unknown one is a 404 that lists the names.
#include <string>
#include <vector>

#include "server/http_server.h"

namespace retort::server {

struct NamedModel {
  std::string name;  // the id /v1/models reports and requests select by
  ServingModel model;
};

class ServedModels {
 public:
  ServedModels() = default;
  // Throws retort::Error (InvalidInput) when a name is empty or given twice.
  explicit ServedModels(std::vector<NamedModel> models);

  // The model a request's `model` field selects (empty: none given); throws ApiError 404.
  const NamedModel& route(const std::string& requested) const;
  const NamedModel* find(const std::string& name) const;
  const std::vector<NamedModel>& all() const { return models_; }
  bool empty() const { return models_.empty(); }
  // "'a', 'b'", for error messages.
  std::string quoted_names() const;

 private:
  std::vector<NamedModel> models_;
};

// The names must be non-empty and distinct: throws retort::Error (InvalidInput) saying which is not.
void check_model_names(const std::vector<std::string>& names);

}  // namespace retort::server

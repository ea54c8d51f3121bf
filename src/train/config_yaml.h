#pragma once
// The top of every YAML config retort reads (train, distill, pipeline): the text parsed, with an
// error naming the source when it is not YAML or not a map of settings.
#include <string>

#include <yaml-cpp/yaml.h>

namespace retort::train {

YAML::Node parse_config_root(const std::string& yaml_text, const std::string& source);

}  // namespace retort::train

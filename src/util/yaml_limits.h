#pragma once
// YAML configs get the same nesting bound as JSON inputs (util/input_limits.h): yaml-cpp's parser
// stops at 2,000 levels, but the readers walk the tree recursively and no config is deeper than a
// few levels.
#include <string>

#include <yaml-cpp/yaml.h>

namespace retort {

// Throws retort::Error (InvalidInput) naming `source` when collections nest more than
// kMaxInputNesting levels deep.
void check_yaml_nesting(const YAML::Node& root, const std::string& source);

}  // namespace retort

#pragma once
// YAML configs get the same nesting bound as JSON inputs (util/input_limits.h): yaml-cpp's parser
// stops at 2,000 levels, but the readers walk the tree recursively and no config is deeper than a
// few levels. And every map key must be a plain scalar: YAML allows a map or a list as a key
// ("? {a: 1}"), which no config has and which the readers' key names cannot hold.
#include <string>

#include <yaml-cpp/yaml.h>

namespace retort {

// Throws retort::Error (InvalidInput) naming `source` when collections nest more than
// kMaxInputNesting levels deep or a map key is a map or a list.
void check_yaml_shape(const YAML::Node& root, const std::string& source);

}  // namespace retort

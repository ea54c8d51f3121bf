#include "util/yaml_limits.h"

#include "util/error.h"
#include "util/input_limits.h"

namespace retort {

namespace {

// Recursion is bounded by the check itself: it stops at the first level past the limit.
void check_below(const YAML::Node& node, int depth, const std::string& source) {
  if (!node.IsMap() && !node.IsSequence()) return;
  require(depth < kMaxInputNesting, ErrorKind::InvalidInput,
          "{}: maps/lists nest more than {} levels deep; a retort config has a few levels (see configs/)", source,
          kMaxInputNesting);
  for (const auto& item : node) {
    if (node.IsMap()) {
      require(!item.first.IsMap() && !item.first.IsSequence(), ErrorKind::InvalidInput,
              "{}: a key is a {} (YAML's '? ' complex key); config keys are plain names such as batch_size", source,
              item.first.IsMap() ? "map" : "list");
      check_below(item.second, depth + 1, source);
    } else {
      check_below(item, depth + 1, source);
    }
  }
}

}  // namespace

void check_yaml_shape(const YAML::Node& root, const std::string& source) { check_below(root, 0, source); }

}  // namespace retort

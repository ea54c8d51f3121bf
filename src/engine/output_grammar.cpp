#include "engine/output_grammar.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "util/error.h"

namespace retort {

namespace {

using json = nlohmann::json;
using Kind = OutputGrammar::Kind;
using Node = OutputGrammar::Node;

Node node_of(Kind kind) {
  Node node;
  node.kind = kind;
  return node;
}

constexpr int kMaxSchemaDepth = 16;

Node literals_node(std::vector<std::pair<std::string, int32_t>> items) {
  std::sort(items.begin(), items.end());
  items.erase(std::unique(items.begin(), items.end(),
                          [](const auto& a, const auto& b) { return a.first == b.first; }),
              items.end());
  Node node;
  node.kind = Kind::Literals;
  for (auto& [text, result] : items) {
    node.literals.push_back(std::move(text));
    node.literal_result.push_back(result);
  }
  return node;
}

// JSON Schema → grammar nodes. The shared generic nodes (any value and its parts) are made on first use.
class SchemaCompiler {
 public:
  explicit SchemaCompiler(OutputGrammar& g) : g_(g) {}

  int32_t any_value() {
    if (any_value_ >= 0) return any_value_;
    Node value;
    value.kind = Kind::AnyValue;
    any_value_ = g_.add(value);
    Node object;
    object.kind = Kind::AnyObject;
    object.child = any_value_;
    Node array;
    array.kind = Kind::Array;
    array.child = any_value_;
    // AnyValue's alternatives by first byte, in this order: { [ " number true/false null.
    const std::vector<int32_t> parts{g_.add(object), g_.add(array), string(), number(false),
                                     g_.add(literals_node({{"false", 0}, {"true", 1}})),
                                     g_.add(literals_node({{"null", 0}}))};
    g_.mutable_node(any_value_).properties = parts;
    return any_value_;
  }
  int32_t string() {
    if (string_ < 0) string_ = g_.add(node_of(Kind::String));
    return string_;
  }
  int32_t number(bool integer) {
    int32_t& id = integer ? integer_ : number_;
    if (id < 0) id = g_.add(node_of(integer ? Kind::Integer : Kind::Number));
    return id;
  }

  int32_t compile(const json& schema, int depth) {
    require(depth <= kMaxSchemaDepth, ErrorKind::InvalidInput,
            "response_format: the JSON schema nests deeper than {} levels", kMaxSchemaDepth);
    require(schema.is_object(), ErrorKind::InvalidInput,
            "response_format: a JSON schema must be an object, got {}", schema.type_name());
    static const std::set<std::string> known{"type",     "properties", "required", "items",  "enum",    "const",
                                             "minItems", "maxItems",   "title",    "description", "$schema",
                                             "minLength", "maxLength",
                                             "additionalProperties", "default", "examples"};
    for (const auto& [key, value] : schema.items()) {
      require(known.count(key) > 0, ErrorKind::InvalidInput,
              "response_format: the JSON schema keyword '{}' is not supported (supported: type, properties, required, "
              "items, enum, const, minItems, maxItems, minLength, maxLength, additionalProperties: false)",
              key.substr(0, 64));
    }
    if (const auto it = schema.find("enum"); it != schema.end()) {
      require(it->is_array() && !it->empty(), ErrorKind::InvalidInput, "response_format: 'enum' must be a non-empty array");
      std::vector<std::pair<std::string, int32_t>> items;
      for (const auto& value : *it) items.emplace_back(value.dump(), 0);
      return g_.add(literals_node(std::move(items)));
    }
    if (const auto it = schema.find("const"); it != schema.end()) return g_.add(literals_node({{it->dump(), 0}}));
    std::string type = schema.contains("properties") ? "object" : "";
    if (const auto it = schema.find("type"); it != schema.end()) {
      require(it->is_string(), ErrorKind::InvalidInput,
              "response_format: 'type' must be one type name (a list of types is not supported)");
      type = it->get<std::string>();
    }
    if (type == "string") {
      if (!schema.contains("minLength") && !schema.contains("maxLength")) return string();
      Node node = node_of(Kind::String);
      node.min_items = bound(schema, "minLength", 0);
      node.max_items = bound(schema, "maxLength", INT64_MAX);
      require(node.min_items <= node.max_items, ErrorKind::InvalidInput, "response_format: minLength is over maxLength");
      return g_.add(node);
    }
    if (type == "number") return number(false);
    if (type == "integer") return number(true);
    if (type == "boolean") return g_.add(literals_node({{"false", 0}, {"true", 1}}));
    if (type == "null") return g_.add(literals_node({{"null", 0}}));
    if (type == "array") return array(schema, depth);
    if (type == "object") return object(schema, depth);
    require(type.empty(), ErrorKind::InvalidInput, "response_format: unknown JSON schema type '{}'", type.substr(0, 64));
    return any_value();
  }

 private:
  static int64_t bound(const json& schema, const char* key, int64_t fallback) {
    if (!schema.contains(key)) return fallback;
    require(schema[key].is_number_integer() && schema[key].get<int64_t>() >= 0, ErrorKind::InvalidInput,
            "response_format: '{}' must be a whole number ≥ 0", key);
    return schema[key].get<int64_t>();
  }

  int32_t array(const json& schema, int depth) {
    Node node;
    node.kind = Kind::Array;
    node.child = schema.contains("items") ? compile(schema["items"], depth + 1) : any_value();
    node.min_items = bound(schema, "minItems", 0);
    node.max_items = bound(schema, "maxItems", INT64_MAX);
    require(node.min_items <= node.max_items, ErrorKind::InvalidInput, "response_format: minItems is over maxItems");
    return g_.add(node);
  }

  int32_t object(const json& schema, int depth) {
    const auto properties = schema.find("properties");
    if (properties == schema.end() || properties->empty()) {
      const auto extra = schema.find("additionalProperties");
      if (extra != schema.end() && extra->is_boolean() && !extra->get<bool>()) return g_.add(literals_node({{"{}", 0}}));
      Node node;
      node.kind = Kind::AnyObject;
      node.child = any_value();
      return g_.add(node);
    }
    require(properties->is_object(), ErrorKind::InvalidInput, "response_format: 'properties' must be an object");
    std::set<std::string> required;
    if (const auto it = schema.find("required"); it != schema.end()) {
      require(it->is_array(), ErrorKind::InvalidInput, "response_format: 'required' must be an array of names");
      for (const auto& name : *it) {
        require(name.is_string() && properties->contains(name.get<std::string>()), ErrorKind::InvalidInput,
                "response_format: 'required' names {}, which is not one of the properties", name.dump().substr(0, 64));
        required.insert(name.get<std::string>());
      }
    }
    if (const auto extra = schema.find("additionalProperties"); extra != schema.end()) {
      require(extra->is_boolean() && !extra->get<bool>(), ErrorKind::InvalidInput,
              "response_format: only additionalProperties: false is supported (the reply holds the listed properties)");
    }
    Node node;
    node.kind = Kind::Object;
    std::vector<std::string> keys;
    // The request's JSON object keeps its keys sorted by name, so the reply's properties come in that
    // order (any order is valid JSON for the schema).
    for (const auto& [name, value] : properties->items()) {
      keys.push_back(json(name).dump());
      node.properties.push_back(compile(value, depth + 1));
      node.required.push_back(required.count(name) > 0);
    }
    // From property i the next key is any of i, i+1, … up to and including the first required one.
    for (size_t i = 0; i <= keys.size(); ++i) {
      std::vector<std::pair<std::string, int32_t>> choices;
      for (size_t j = i; j < keys.size(); ++j) {
        choices.emplace_back(keys[j], int32_t(j));
        if (node.required[j]) break;
      }
      node.key_choices.push_back(g_.add(literals_node(std::move(choices))));
    }
    return g_.add(node);
  }

  OutputGrammar& g_;
  int32_t any_value_ = -1, string_ = -1, number_ = -1, integer_ = -1;
};

std::shared_ptr<OutputGrammar> with_root() {
  auto grammar = std::make_shared<OutputGrammar>();
  grammar->add(node_of(Kind::Root));
  return grammar;
}

}  // namespace

int32_t OutputGrammar::add(Node node) {
  nodes_.push_back(std::move(node));
  return int32_t(nodes_.size() - 1);
}

std::shared_ptr<const OutputGrammar> OutputGrammar::json_schema(const nlohmann::json& schema) {
  auto grammar = with_root();
  SchemaCompiler compiler(*grammar);
  const int32_t value = compiler.compile(schema, 0);
  grammar->mutable_node(0).child = value;
  return grammar;
}

std::shared_ptr<const OutputGrammar> OutputGrammar::any_json_object() {
  auto grammar = with_root();
  SchemaCompiler compiler(*grammar);
  Node object;
  object.kind = Kind::AnyObject;
  object.child = compiler.any_value();
  grammar->mutable_node(0).child = grammar->add(object);
  return grammar;
}

std::shared_ptr<const OutputGrammar> OutputGrammar::choice(const std::vector<std::string>& strings) {
  require(!strings.empty(), ErrorKind::InvalidInput, "a choice needs at least one string");
  std::vector<std::pair<std::string, int32_t>> items;
  for (const auto& s : strings) {
    require(!s.empty(), ErrorKind::InvalidInput, "a choice cannot be the empty string");
    items.emplace_back(s, 0);
  }
  auto grammar = with_root();
  grammar->set_plain_text(true);
  grammar->mutable_node(0).child = grammar->add(literals_node(std::move(items)));
  return grammar;
}

}  // namespace retort

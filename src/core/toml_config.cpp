#include "core/toml_config.h"

#include <sstream>

#include "core/error.h"
#include <fmt/ranges.h>
#include <fstream>

namespace mohge {

static std::string where(const toml::source_region& r) {
  return fmt::format("line {}, column {}", r.begin.line, r.begin.column);
}

TomlDoc TomlDoc::parse_string(const std::string& text, const std::string& source) {
  TomlDoc d;
  d.source_ = source;
  try {
    d.root_ = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    fail("{}: malformed TOML at {}: {}", source, where(e.source()), e.description());
  }
  return d;
}

TomlDoc TomlDoc::parse_file(const std::string& path) {
  std::ifstream in(path);
  MOHGE_CHECK(in.good(), "cannot open config {}", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_string(ss.str(), path);
}

void TomlDoc::apply_override(const std::string& assignment) {
  auto eq = assignment.find('=');
  MOHGE_CHECK(eq != std::string::npos && eq > 0,
              "--set '{}': expected section.key=value", assignment);
  std::string path = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  auto dot = path.rfind('.');
  MOHGE_CHECK(dot != std::string::npos && dot > 0 && dot + 1 < path.size(),
              "--set '{}': the key must be section.key (e.g. train.lr=3e-4)", assignment);
  toml::table* t = &root_;
  std::string section = path.substr(0, dot);
  size_t start = 0;
  while (start <= section.size()) {  // walk/create nested sections "a.b"
    size_t end = section.find('.', start);
    std::string part = section.substr(start, end == std::string::npos ? std::string::npos : end - start);
    auto* node = t->get(part);
    if (!node) node = t->insert(part, toml::table{}).first->second.as_table();
    MOHGE_CHECK(node && node->is_table(), "--set '{}': '{}' is not a section", assignment, part);
    t = node->as_table();
    if (end == std::string::npos) break;
    start = end + 1;
  }
  std::string key = path.substr(dot + 1);
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + text);
  } catch (const toml::parse_error&) {
    parsed.insert("v", text);  // bare words: --set model.ffn_kind=mohge
  }
  t->insert_or_assign(key, *parsed.get("v"));
}

std::string TomlDoc::to_toml() const {
  std::stringstream ss;
  ss << root_;
  return ss.str();
}

TomlSection::TomlSection(TomlDoc& doc, const std::string& name) : name_(name), source_(doc.source()) {
  toml::node* n = doc.root().get(name);
  if (!n) n = doc.root().insert(name, toml::table{}).first->second.as_table();
  MOHGE_CHECK(n->is_table(), "{}: '{}' must be a section ([{}])", source_, name, name);
  table_ = n->as_table();
}

bool TomlSection::has(const char* key) const { return table_->contains(key); }

const toml::node* TomlSection::lookup(const char* key) {
  read_.insert(key);
  return table_->get(key);
}

template <>
void TomlSection::get<bool>(const char* key, bool& value) {
  if (auto* n = lookup(key)) {
    MOHGE_CHECK(n->is_boolean(), "{}: {}.{} must be true or false", source_, name_, key);
    value = n->as_boolean()->get();
  } else {
    table_->insert(key, value);
  }
}

template <>
void TomlSection::get<int64_t>(const char* key, int64_t& value) {
  if (auto* n = lookup(key)) {
    MOHGE_CHECK(n->is_integer(), "{}: {}.{} must be an integer", source_, name_, key);
    value = n->as_integer()->get();
  } else {
    table_->insert(key, value);
  }
}

template <>
void TomlSection::get<int>(const char* key, int& value) {
  int64_t v = value;
  get<int64_t>(key, v);
  MOHGE_CHECK(v >= INT32_MIN && v <= INT32_MAX, "{}: {}.{} = {} is out of range", source_, name_,
              key, v);
  value = (int)v;
}

template <>
void TomlSection::get<double>(const char* key, double& value) {
  if (auto* n = lookup(key)) {
    MOHGE_CHECK(n->is_number(), "{}: {}.{} must be a number", source_, name_, key);
    value = n->is_integer() ? (double)n->as_integer()->get() : n->as_floating_point()->get();
  } else {
    table_->insert(key, value);
  }
}

template <>
void TomlSection::get<float>(const char* key, float& value) {
  double v = value;
  get<double>(key, v);
  value = (float)v;
}

template <>
void TomlSection::get<std::string>(const char* key, std::string& value) {
  if (auto* n = lookup(key)) {
    MOHGE_CHECK(n->is_string(), "{}: {}.{} must be a string", source_, name_, key);
    value = n->as_string()->get();
  } else {
    table_->insert(key, value);
  }
}

template <>
void TomlSection::get<std::vector<int>>(const char* key, std::vector<int>& value) {
  if (auto* n = lookup(key)) {
    MOHGE_CHECK(n->is_array(), "{}: {}.{} must be an array of integers", source_, name_, key);
    value.clear();
    for (auto& e : *n->as_array()) {
      MOHGE_CHECK(e.is_integer(), "{}: {}.{} must be an array of integers", source_, name_, key);
      value.push_back((int)e.as_integer()->get());
    }
  } else if (!value.empty()) {
    toml::array a;
    for (int v : value) a.push_back(v);
    table_->insert(key, std::move(a));
  }
}

void TomlSection::finish() const {
  for (auto& [k, v] : *table_)
    if (!read_.count(std::string(k.str())))
      fail("{}: unknown config key '{}.{}'", source_, name_, k.str());
}

void TomlDoc::check_sections(const std::vector<std::string>& known) const {
  for (auto& [k, v] : root_) {
    bool ok = false;
    for (auto& s : known) ok = ok || s == k.str();
    MOHGE_CHECK(ok, "{}: unknown config section or key '{}' (sections: {})", source_, k.str(),
                fmt::join(known, ", "));
  }
}

}  // namespace mohge

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
              "--set '{}': expected section.key=value", shortened(assignment));
  std::string path = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  auto dot = path.rfind('.');
  MOHGE_CHECK(dot != std::string::npos && dot > 0 && dot + 1 < path.size(),
              "--set '{}': the key must be section.key (e.g. train.lr=3e-4)", shortened(assignment));
  toml::table* t = &root_;
  std::string section = path.substr(0, dot);
  size_t start = 0;
  while (start <= section.size()) {  // walk/create nested sections "a.b"
    size_t end = section.find('.', start);
    std::string part = section.substr(start, end == std::string::npos ? std::string::npos : end - start);
    auto* node = t->get(part);
    if (!node) node = t->insert(part, toml::table{}).first->second.as_table();
    MOHGE_CHECK(node && node->is_table(), "--set '{}': '{}' is not a section", shortened(assignment), shortened(part));
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

const toml::table& TomlDoc::section(const std::string& name) const {
  static const toml::table empty;
  const toml::node* n = root_.get(name);
  if (!n) return empty;
  MOHGE_CHECK(n->is_table(), "{}: '{}' must be a section ([{}])", source_, name, name);
  return *n->as_table();
}

void TomlDoc::check_sections(const std::vector<std::string>& known) const {
  for (auto& [k, v] : root_) {
    bool ok = false;
    for (auto& s : known) ok = ok || s == k.str();
    MOHGE_CHECK(ok, "{}: unknown config section or key '{}' (sections: {})", source_, shortened(std::string(k.str())),
                fmt::join(known, ", "));
  }
}

}  // namespace mohge

// defines: the type-independent parts of config_schema.h
#include "core/config_schema.h"

#include <sstream>

namespace mohge {

bool ConfigSection::declares(const std::string& key) const {
  for (auto& k : keys)
    if (k.name == key) return true;
  return false;
}

void reject_unknown_keys(const toml::table& t, const std::string& source,
                         std::initializer_list<const ConfigSection*> parts) {
  const std::string& section = (*parts.begin())->name;
  for (auto& [k, v] : t) {
    const std::string key(k.str());
    bool known = false;
    for (auto* p : parts) known = known || p->declares(key);
    if (known) continue;
    for (auto* p : parts)
      for (auto& m : p->options.moved)
        if (m.from == key) fail("{}: {}.{} moved to {}", source, section, key, m.to);
    fail("{}: unknown config key '{}.{}' (`mohge config --keys` lists every key)", source, section,
         shortened(key));
  }
}

std::string config_reference(const std::vector<const ConfigSection*>& sections) {
  std::string md;
  const ConfigSection* prev = nullptr;
  for (auto* s : sections) {
    if (!prev || prev->name != s->name) md += fmt::format("\n## [{}]\n", s->name);
    md += fmt::format("\n{}\n\n| key | type | default | constraint | doc |\n|---|---|---|---|---|\n", s->doc);
    for (auto& k : s->keys) {
      std::string doc = k.doc;
      if (!k.json.empty())
        doc += fmt::format(" (config.json: `{}`{})", k.json, k.json_required ? ", required" : "");
      md += fmt::format("| `{}.{}` | {} | `{}` | {} | {} |\n", s->name, k.name, k.type, k.default_text,
                        k.constraint_text, doc);
    }
    for (auto& m : s->options.moved) md += fmt::format("\n`{}.{}` moved to `{}`.\n", s->name, m.from, m.to);
    prev = s;
  }
  return md;
}

namespace config_detail {

std::string show_node(const toml::node& n) {
  if (auto* s = n.as_string()) return "\"" + shortened(s->get()) + "\"";
  if (auto* f = n.as_floating_point()) return fmt::format("{}", f->get());  // 1e+300, not 17 digits
  std::stringstream ss;
  n.visit([&](auto&& v) { ss << v; });
  return shortened(ss.str());
}

void json_to_toml(const nlohmann::json& j, toml::array& out) {
  if (j.is_boolean()) out.push_back(j.get<bool>());
  else if (j.is_number_unsigned() && j.get<uint64_t>() > (uint64_t)INT64_MAX) out.push_back(j.get<double>());
  else if (j.is_number_integer()) out.push_back(j.get<int64_t>());
  else if (j.is_number()) out.push_back(j.get<double>());
  else if (j.is_string()) out.push_back(j.get<std::string>());
  else if (j.is_array()) {
    toml::array a;
    for (auto& e : j) json_to_toml(e, a);
    out.push_back(std::move(a));
  } else {
    out.push_back(toml::table{});  // null or an object: the type of no key
  }
}

std::string constraint_text(const Constraint& c, bool real) {
  if (!c.choices.empty()) return fmt::format("one of {}", fmt::join(c.choices, ", "));
  const bool lo = std::isfinite(c.lo), hi = std::isfinite(c.hi);
  std::string t;
  if (lo && hi) t = fmt::format("in {}{}, {}{}", c.lo_open ? "(" : "[", c.lo, c.hi, c.hi_open ? ")" : "]");
  else if (lo) t = fmt::format("{} {}", c.lo_open ? ">" : ">=", c.lo);
  else if (hi) t = fmt::format("{} {}", c.hi_open ? "<" : "<=", c.hi);
  if (real && !hi) t = t.empty() ? "finite" : "finite and " + t;
  return t;
}

void check_number(double v, const std::string& shown, const Constraint& c, bool real, const std::string& text,
                  const std::string& what) {
  const bool ok = !std::isnan(v) && (!real || std::isfinite(v)) && (c.lo_open ? v > c.lo : v >= c.lo) &&
                  (c.hi_open ? v < c.hi : v <= c.hi);
  MOHGE_CHECK(ok, "{} = {} must be {}", what, shown, text);
}

void check_items(size_t n, const Constraint& c, const std::string& what) {
  MOHGE_CHECK(c.max_items == 0 || n <= c.max_items, "{} has {} entries; at most {} are allowed", what, n,
              c.max_items);
}

void check_choice(const std::string& v, const Constraint& c, const std::string& text, const std::string& what) {
  if (c.choices.empty()) return;
  for (auto& ch : c.choices)
    if (v == ch) return;
  fail("{} = \"{}\" must be {}", what, shortened(v), text);
}

void fail_type(const std::string& what, const char* expected, const std::string& got) {
  fail("{} must be {} (got {})", what, expected, got);
}

}  // namespace config_detail

}  // namespace mohge

// defines: ConfigSchema<S> (the keys of one config section, each declared once), ConfigKey<S>,
//          Constraint and its builders (closed, open_closed, closed_open, greater, at_least,
//          one_of), KeyOptions, MovedKey, KeySet, reject_unknown_keys, config_reference
// A key's one declaration (TOML name, struct member, constraint, doc, config.json name) drives:
// reading it from TOML with its type and constraint checked and the section.key in every error;
// the resolved TOML a run stores; the config.json round trip; checking a struct built in code;
// and the reference table of `mohge config --keys`. Its default is the member's initialiser in S.
// Every real value must be finite; every size has an upper bound, so no value can crash, hang or
// exhaust memory (issue 12).
#pragma once
#include <cmath>
#include <functional>
#include <initializer_list>
#include <limits>
#include <nlohmann/json.hpp>
#include <fmt/ranges.h>
#include <set>
#include <string>
#include <toml++/toml.h>
#include <type_traits>
#include <vector>

#include "core/enum_names.h"
#include "core/error.h"

namespace mohge {

// What a value must satisfy. Numbers: an interval, each end open or closed (integers are also
// kept within their C++ type; reals are also finite). Strings: one of `choices` when given.
// Integer lists: every element in the interval, at most max_items of them. Enums: their names.
struct Constraint {
  double lo = -INFINITY, hi = INFINITY;
  bool lo_open = false, hi_open = false;
  std::vector<std::string> choices;
  size_t max_items = 0;  // 0: any number
  Constraint at_most_items(size_t n) const {
    Constraint c = *this;
    c.max_items = n;
    return c;
  }
};
inline Constraint closed(double lo, double hi) { return {lo, hi, false, false, {}, 0}; }     // [lo, hi]
inline Constraint open_closed(double lo, double hi) { return {lo, hi, true, false, {}, 0}; } // (lo, hi]
inline Constraint closed_open(double lo, double hi) { return {lo, hi, false, true, {}, 0}; } // [lo, hi)
inline Constraint greater(double lo) { return {lo, INFINITY, true, false, {}, 0}; }          // > lo
inline Constraint at_least(double lo) { return {lo, INFINITY, false, false, {}, 0}; }        // >= lo
inline Constraint one_of(std::vector<std::string> choices) {
  Constraint c;
  c.choices = std::move(choices);
  return c;
}

struct KeyOptions {
  const char* json = nullptr;          // config.json name when it is not the TOML name; "a.b" nests
  bool json_required = false;          // a config.json without the key is an error
  const char* default_text = nullptr;  // the reference's default, for one derived from other keys
};

// The type-independent part of a key: what errors and the reference print.
struct KeyInfo {
  std::string name, json, type, default_text, constraint_text, doc;
  bool json_required = false;
};

struct MovedKey {
  std::string from, to;  // "matmul_precision" (in this section) -> "run.matmul_precision"
};

struct SchemaOptions {
  bool in_json = false;  // the section's keys are part of config.json (under their json names)
  std::vector<MovedKey> moved = {};
};

using KeySet = std::set<std::string>;  // the keys a file gave (TOML names): for derived defaults

// The type-independent half of a schema.
struct ConfigSection {
  std::string name, doc;
  SchemaOptions options;
  std::vector<KeyInfo> keys;
  bool declares(const std::string& key) const;
};

// Errors for a key of `t` (section parts[0]->name) that no part declares, naming the new key when
// it moved; a section can be read by several schemas (the [moe] routing keys and width layout).
void reject_unknown_keys(const toml::table& t, const std::string& source,
                         std::initializer_list<const ConfigSection*> parts);
// Markdown: a heading per section, its doc, a table (key, type, default, constraint, doc), and
// the keys that moved. Consecutive parts of one section share the heading.
std::string config_reference(const std::vector<const ConfigSection*>& sections);

namespace config_detail {

template <class T>
constexpr bool is_int = std::is_integral_v<T> && !std::is_same_v<T, bool>;
template <class T>
constexpr bool is_int_list = std::is_same_v<T, std::vector<int>>;

std::string show_node(const toml::node& n);          // a TOML value as written, shortened
void json_to_toml(const nlohmann::json& j, toml::array& out);  // appends j as one TOML node
// "in [1, 1024]", "finite and > 0", "one of cpu, cuda" (a list's element; max_items apart).
std::string constraint_text(const Constraint& c, bool real);
// "<what> = <shown> must be <text>" unless v is within c (and, for reals, finite).
void check_number(double v, const std::string& shown, const Constraint& c, bool real, const std::string& text,
                  const std::string& what);
void check_items(size_t n, const Constraint& c, const std::string& what);
void check_choice(const std::string& v, const Constraint& c, const std::string& text, const std::string& what);
[[noreturn]] void fail_type(const std::string& what, const char* expected, const std::string& got);

template <class T>
std::string type_name() {
  if constexpr (std::is_same_v<T, bool>) return "bool";
  else if constexpr (is_int<T>) return "integer";
  else if constexpr (std::is_floating_point_v<T>) return "float";
  else if constexpr (is_int_list<T>) return "integer list";
  else return "string";
}

// The value as TOML writes it: 8192, 0.001, "runs/default", [8, 16].
template <class T>
std::string show(const T& v) {
  if constexpr (std::is_same_v<T, bool>) return v ? "true" : "false";
  else if constexpr (std::is_arithmetic_v<T>) return fmt::format("{}", v);
  else if constexpr (std::is_enum_v<T>) return fmt::format("\"{}\"", to_string(v));
  else if constexpr (is_int_list<T>) return shortened(fmt::format("[{}]", fmt::join(v, ", ")));
  else return "\"" + shortened(v) + "\"";
}

// The constraint every stored value of T must meet: integers stay within their type.
template <class T>
Constraint effective(Constraint c) {
  using E = std::conditional_t<is_int_list<T>, int, T>;
  if constexpr (is_int<E>) {
    c.lo = std::max(c.lo, (double)std::numeric_limits<E>::min());
    c.hi = std::min(c.hi, (double)std::numeric_limits<E>::max());
  }
  return c;
}

// c: the key's constraint within its type (effective), text: as declared (constraint_text).
template <class T>
void check(const T& v, const Constraint& c, const std::string& text, const std::string& what) {
  if constexpr (is_int<T>) check_number((double)v, show(v), c, false, text, what);
  else if constexpr (std::is_floating_point_v<T>) check_number(v, show(v), c, true, text, what);
  else if constexpr (std::is_same_v<T, std::string>) check_choice(v, c, text, what);
  else if constexpr (is_int_list<T>) {
    check_items(v.size(), c, what);
    for (size_t i = 0; i < v.size(); i++)
      check_number(v[i], show(v[i]), c, false, text, fmt::format("{}[{}]", what, i));
  }
}

// A TOML node (or a JSON value carried as one) -> T, type and constraint checked; `got` is the
// value as the file wrote it, for messages.
template <class T>
T read(const toml::node& n, const Constraint& c, const std::string& text, const std::string& what,
       const std::string& got) {
  if constexpr (std::is_same_v<T, bool>) {
    if (!n.is_boolean()) fail_type(what, "true or false", got);
    return n.as_boolean()->get();
  } else if constexpr (is_int<T>) {
    if (!n.is_integer()) fail_type(what, "an integer", got);
    const int64_t v = n.as_integer()->get();
    check_number((double)v, got, c, false, text, what);
    return (T)v;
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!n.is_number()) fail_type(what, "a number", got);
    const double v = n.is_integer() ? (double)n.as_integer()->get() : n.as_floating_point()->get();
    check_number(v, show(v), c, true, text, what);
    return (T)v;
  } else if constexpr (std::is_enum_v<T>) {
    if (!n.is_string()) fail_type(what, "a string", got);
    if (auto v = enum_parse<T>(n.as_string()->get())) return *v;
    fail("{} = {} must be one of {}", what, got, enum_choices<T>());
  } else if constexpr (is_int_list<T>) {
    const toml::array* a = n.as_array();
    bool ints = a != nullptr;
    for (size_t i = 0; ints && i < a->size(); i++) ints = (*a)[i].is_integer();
    if (!ints) fail_type(what, "an array of integers", got);
    check_items(a->size(), c, what);
    T v;
    for (size_t i = 0; i < a->size(); i++) {
      const int64_t e = (*a)[i].as_integer()->get();
      check_number((double)e, fmt::format("{}", e), c, false, text, fmt::format("{}[{}]", what, i));
      v.push_back((int)e);
    }
    return v;
  } else {
    if (!n.is_string()) fail_type(what, "a string", got);
    T v = n.as_string()->get();
    check_choice(v, c, text, what);
    return v;
  }
}

template <class T>
void put_toml(toml::table& t, const std::string& key, const T& v) {
  if constexpr (std::is_enum_v<T>) t.insert_or_assign(key, std::string(to_string(v)));
  else if constexpr (is_int<T>) t.insert_or_assign(key, (int64_t)v);
  else if constexpr (is_int_list<T>) {
    toml::array a;
    for (int e : v) a.push_back(e);
    t.insert_or_assign(key, std::move(a));
  } else t.insert_or_assign(key, v);
}

template <class T>
nlohmann::json to_json(const T& v) {
  if constexpr (std::is_enum_v<T>) return to_string(v);
  else return v;
}

}  // namespace config_detail

// One key of the section read into S. Declared as
//   {"num_layers", &ModelConfig::num_layers, closed(1, 1024), "decoder blocks", {.json = "num_hidden_layers"}}
template <class S>
struct ConfigKey {
  KeyInfo info;
  KeyOptions options;
  std::function<void(S&, const toml::node&, const std::string& what, const std::string& got)> read;
  std::function<void(const S&, const std::string& what)> check;
  std::function<void(const S&, toml::table&)> put_toml;
  std::function<nlohmann::json(const S&)> to_json;

  template <class T>
  ConfigKey(const char* name, T S::*member, Constraint c, const char* doc, KeyOptions o = {})
      : options(o) {
    namespace d = config_detail;
    const bool real = std::is_floating_point_v<T>;
    std::string text;
    if constexpr (std::is_enum_v<T>) text = "one of " + enum_choices<T>();
    else if constexpr (!std::is_same_v<T, bool>) text = d::constraint_text(c, real);
    c = d::effective<T>(std::move(c));
    if (text.empty() && d::is_int<T>) text = d::constraint_text(c, false);  // the type's own range
    info.name = name;
    info.type = d::type_name<T>();
    info.default_text = o.default_text ? o.default_text : d::show(S{}.*member);
    info.constraint_text = !d::is_int_list<T> ? text
                           : c.max_items ? fmt::format("each {}; at most {} entries", text, c.max_items)
                                         : "each " + text;
    info.doc = doc;
    info.json_required = o.json_required;
    read = [member, c, text](S& s, const toml::node& n, const std::string& what, const std::string& got) {
      s.*member = d::read<T>(n, c, text, what, got);
    };
    check = [member, c, text](const S& s, const std::string& what) { d::check<T>(s.*member, c, text, what); };
    put_toml = [member, key = info.name](const S& s, toml::table& t) { d::put_toml<T>(t, key, s.*member); };
    to_json = [member](const S& s) { return d::to_json<T>(s.*member); };
  }
};

template <class S>
class ConfigSchema : public ConfigSection {
 public:
  ConfigSchema(std::string section, std::string doc, std::vector<ConfigKey<S>> keys, SchemaOptions o = {})
      : keys_(std::move(keys)) {
    name = std::move(section);
    this->doc = std::move(doc);
    options = std::move(o);
    for (auto& k : keys_) {
      MOHGE_CHECK(options.in_json || !k.options.json, "config key {}.{}: a json name in a section that is "
                  "not part of config.json", name, k.info.name);
      if (options.in_json) k.info.json = k.options.json ? k.options.json : k.info.name;
      ConfigSection::keys.push_back(k.info);
    }
  }

  // Reads the keys t gives into s (others keep their value); call reject_unknown_keys too.
  KeySet read_toml(const toml::table& t, S& s, const std::string& source) const {
    KeySet given;
    for (auto& k : keys_)
      if (const toml::node* n = t.get(k.info.name)) {
        k.read(s, *n, fmt::format("{}: {}.{}", source, name, k.info.name), config_detail::show_node(*n));
        given.insert(k.info.name);
      }
    return given;
  }

  // read_toml for a section this schema alone declares: any other key is an error.
  KeySet read_section(const toml::table& t, S& s, const std::string& source) const {
    reject_unknown_keys(t, source, {this});
    return read_toml(t, s, source);
  }

  toml::table to_toml(const S& s) const {
    toml::table t;
    for (auto& k : keys_) k.put_toml(s, t);
    return t;
  }

  // config.json: the keys under their json names; a missing key keeps its value in s unless it
  // is required. Errors name the file and the json key.
  KeySet read_json(const nlohmann::json& j, S& s, const std::string& source) const {
    KeySet given;
    for (auto& k : keys_) {
      const nlohmann::json::json_pointer p(json_pointer(k.info.json));
      if (!j.contains(p)) {
        MOHGE_CHECK(!k.info.json_required, "{}: config.json has no '{}'", source, k.info.json);
        continue;
      }
      toml::array carrier;
      config_detail::json_to_toml(j.at(p), carrier);
      k.read(s, *carrier.get(0), fmt::format("{}: {}", source, k.info.json),
             shortened(j.at(p).dump()));
      given.insert(k.info.name);
    }
    return given;
  }

  void to_json(const S& s, nlohmann::json& j) const {
    for (auto& k : keys_) j[nlohmann::json::json_pointer(json_pointer(k.info.json))] = k.to_json(s);
  }

  // Every key's constraint on a struct however it was built; errors name section.key.
  void check(const S& s) const {
    for (auto& k : keys_) k.check(s, name + "." + k.info.name);
  }

 private:
  static std::string json_pointer(std::string key) {
    for (char& ch : key)
      if (ch == '.') ch = '/';
    return "/" + key;
  }
  std::vector<ConfigKey<S>> keys_;
};

}  // namespace mohge

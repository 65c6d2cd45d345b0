// defines: TomlDoc (a TOML file plus --set overrides), TomlSection (typed, checked key reader)
// Every key a run uses is read through TomlSection::get, which checks the type; finish() then
// rejects any key nobody read, so a typo in a config is an error, never silently ignored.
#pragma once
#include <set>
#include <string>
#include <vector>
#include <toml++/toml.h>

namespace mohge {

class TomlDoc {
 public:
  static TomlDoc parse_file(const std::string& path);
  static TomlDoc parse_string(const std::string& text, const std::string& source);
  // "section.key=value": value parsed as a TOML value (number, bool, array, quoted string);
  // anything that does not parse is taken as a bare string.
  void apply_override(const std::string& assignment);
  std::string to_toml() const;
  // Errors for any top-level key that is not one of the known sections.
  void check_sections(const std::vector<std::string>& known) const;
  toml::table& root() { return root_; }
  const std::string& source() const { return source_; }

 private:
  toml::table root_;
  std::string source_;
};

class TomlSection {
 public:
  TomlSection(TomlDoc& doc, const std::string& name);  // a missing section reads as empty
  template <class T> void get(const char* key, T& value);
  bool has(const char* key) const;
  // Records a value derived from other keys, so the resolved config re-reads to the same run.
  void set(const char* key, int64_t value) { table_->insert_or_assign(key, value); }
  // Errors for every key in the section not read through get(); call after reading.
  void finish() const;
  const std::string& name() const { return name_; }

 private:
  const toml::node* lookup(const char* key);
  toml::table* table_ = nullptr;
  std::string name_, source_;
  std::set<std::string> read_;
};

}  // namespace mohge

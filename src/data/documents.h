// defines: DocumentReader, read_documents, normalize_document
// The plain-text document format every data tool reads and writes:
//   UTF-8 text; documents are separated by one or more blank lines (a line that is empty or holds
//   only spaces/tabs); a document's internal newlines are part of its text. CRLF line endings and a
//   leading UTF-8 BOM are accepted and dropped. Documents never contain blank lines, so a writer
//   must pass each document through normalize_document first.
// DocumentReader streams one document at a time so corpora larger than memory work.
#pragma once
#include <cstdint>
#include <fstream>
#include <istream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/utf8.h"

namespace mohge {

class DocumentReader {
 public:
  // Reads from a stream the caller owns; `name` only labels error messages.
  explicit DocumentReader(std::istream& in, std::string name = "<stream>",
                          InvalidUtf8 invalid_utf8 = InvalidUtf8::refuse);
  // Opens a file; throws mohge::Error naming it if it cannot be opened.
  explicit DocumentReader(const std::string& path, InvalidUtf8 invalid_utf8 = InvalidUtf8::refuse);

  // Fills `doc` with the next document (no trailing newline); false at end of input.
  // Throws mohge::Error on a read error, and on invalid UTF-8 (naming line and byte offset) unless
  // constructed with InvalidUtf8::replace.
  bool next(std::string& doc);

  uint64_t documents_read() const { return docs_; }
  uint64_t bytes_read() const { return bytes_; }  // raw bytes consumed so far
  const std::string& name() const { return name_; }

 private:
  std::unique_ptr<std::ifstream> file_;  // set when we opened the file ourselves
  std::istream* in_;
  std::string name_;
  InvalidUtf8 invalid_utf8_;
  std::string line_;
  uint64_t docs_ = 0, bytes_ = 0, lines_ = 0;
};

// Whole stream into memory; for small inputs and tests.
std::vector<std::string> read_documents(std::istream& in);

// Makes arbitrary text a valid single document: LF line endings, trailing whitespace and control
// characters (other than tab/newline) removed, blank lines dropped, no leading/trailing newlines.
// Returns "" when nothing is left (the caller then skips the document).
std::string normalize_document(std::string_view text);


}  // namespace mohge

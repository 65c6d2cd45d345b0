// fuzz target: DocumentReader (the text format of data prepare and cloze) and the UTF-8 gate.
// Invariants: the replacement is valid UTF-8 and leaves valid text unchanged; with replacement on,
// every document is valid UTF-8 with no blank line inside.
#include <sstream>

#include "core/utf8.h"
#include "data/documents.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text((const char*)data, size);
  const size_t bad = mohge::utf8_first_invalid(text);
  const std::string fixed = mohge::utf8_replace_invalid(text);
  if (mohge::utf8_first_invalid(fixed) != std::string::npos) std::abort();
  if ((bad == std::string::npos) != (fixed == text)) std::abort();
  fuzz_expect_clean([&] {
    std::istringstream in(text);
    mohge::DocumentReader r(in, "<fuzz>");
    std::string doc;
    while (r.next(doc)) {
    }
    if (bad != std::string::npos) std::abort();  // invalid input must have been refused
  });
  std::istringstream in(text);
  mohge::DocumentReader r(in, "<fuzz>", mohge::InvalidUtf8::replace);
  std::string doc;
  while (r.next(doc))
    if (doc.empty() || mohge::utf8_first_invalid(doc) != std::string::npos || doc.find("\n\n") != std::string::npos)
      std::abort();
  return 0;
}

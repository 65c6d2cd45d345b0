// defines: InvalidUtf8, utf8_first_invalid, utf8_replace_invalid, utf8_validate — the one UTF-8 gate
// for outside text (data prepare, tokenizer train, prompts, eval JSONL, cloze corpora). Invalid input
// (Latin-1 "café", random bytes) is refused with the file, line and byte offset of the first bad
// sequence, unless the user passes --replace-invalid-utf8: then each maximal invalid subpart becomes
// U+FFFD (Unicode §3.9 "substitution of maximal subparts", as SentencePiece and Python do).
// Valid UTF-8 here is RFC 3629: no overlong forms, no surrogates (U+D800..DFFF), nothing > U+10FFFF.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace mohge {

enum class InvalidUtf8 { refuse, replace };

// Byte offset of the first invalid sequence in s, or std::string_view::npos when s is valid.
size_t utf8_first_invalid(std::string_view s);
// s with every maximal invalid subpart replaced by U+FFFD (EF BF BD).
std::string utf8_replace_invalid(std::string_view s);

// Checks `text`, line `line` (1-based) of `source` starting at byte `line_offset` of it. Valid: as
// is. Invalid: replaced under InvalidUtf8::replace, else mohge::Error
//   "<source>:<line>: invalid UTF-8 at byte offset <N> (0xE9 ...); pass --replace-invalid-utf8 ...".
void utf8_validate(std::string& text, InvalidUtf8 policy, const std::string& source, uint64_t line,
                   uint64_t line_offset);

}  // namespace mohge

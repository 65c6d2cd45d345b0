// defines: enum_from_string, enum_choices — a config enum from its name and back
// An enum E takes part by declaring, in its own namespace, `const char* to_string(E)` and
// `std::span<const E> enum_values(E)` (every value, in the order the docs list them); they are
// found by argument-dependent lookup, so the names are written once, in to_string.
#pragma once
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/error.h"

namespace mohge {

// "a, b, c": every name of E.
template <class E>
std::string enum_choices() {
  std::string s;
  for (E v : enum_values(E{})) s += (s.empty() ? "" : ", ") + std::string(to_string(v));
  return s;
}

template <class E>
std::optional<E> enum_parse(std::string_view name) {
  for (E v : enum_values(E{}))
    if (name == to_string(v)) return v;
  return std::nullopt;
}

// The value named `name`; otherwise throws "unknown <what> '<name>' (valid: ...)".
template <class E>
E enum_from_string(std::string_view name, const char* what) {
  if (auto v = enum_parse<E>(name)) return *v;
  fail("unknown {} '{}' (valid: {})", what, name, enum_choices<E>());
}

}  // namespace mohge

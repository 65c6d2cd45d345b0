// defines: mohge::Error, mohge::fail, MOHGE_CHECK
// Every user-facing failure (bad config, data, checkpoint, flags) is a mohge::Error with a one-line
// message naming the problem; the CLI prints it and exits non-zero. Internal invariants use the
// same macro: a clear message beats an abort.
#pragma once
#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace mohge {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace mohge

#define MOHGE_CHECK(cond, ...)                    \
  do {                                            \
    if (!(cond)) ::mohge::fail(__VA_ARGS__);      \
  } while (0)

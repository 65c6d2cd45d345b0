// defines: physical_memory_bytes, require_memory
#include "core/memory_budget.h"

#include <unistd.h>

#include "core/error.h"

namespace mohge {

uint64_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
}

void require_memory(uint64_t bytes, std::string_view what) {
  const uint64_t have = physical_memory_bytes();
  MOHGE_CHECK(have == 0 || bytes <= have, "{} needs {:.1f} GB, more than the {:.1f} GB of physical memory", what,
              bytes / 1e9, have / 1e9);
}

}  // namespace mohge

// defines: physical_memory_bytes, require_memory — refuse an allocation that cannot fit, with its size
// A model too large for the machine must get a one-line error before anything is allocated, not
// be killed by the kernel's OOM killer minutes later (or crash in std::bad_alloc).
#pragma once
#include <cstdint>
#include <string_view>

namespace mohge {

// Physical memory of the machine (sysconf: _SC_PHYS_PAGES × _SC_PAGE_SIZE); 0 when unknown.
uint64_t physical_memory_bytes();
// Throws mohge::Error "<what> needs X GB, more than the Y GB of physical memory" when `bytes` exceeds
// the physical memory (a known amount: nothing is checked when sysconf cannot tell).
void require_memory(uint64_t bytes, std::string_view what);

}  // namespace mohge

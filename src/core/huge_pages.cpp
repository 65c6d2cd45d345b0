// defines: advise_huge_pages, map_file_huge_pages (core/huge_pages.h)
#include "core/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>

namespace mohge {

namespace {
constexpr int kPopulateRead = 22;  // MADV_POPULATE_READ (Linux 5.14), which older headers lack
uintptr_t round_up(uintptr_t x, size_t to) { return (x + to - 1) / to * to; }
}  // namespace

void advise_huge_pages(void* p, size_t bytes) {
  const uintptr_t begin = round_up(reinterpret_cast<uintptr_t>(p), kHugePageBytes);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) / kHugePageBytes * kHugePageBytes;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

void* map_file_huge_pages(int fd, size_t size) {
  // the kernel places a file mapping this large on a 2 MiB boundary itself (thp_get_unmapped_area)
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) return nullptr;
  // advised before populating, so the faults map (and read ahead) whole 2 MiB folios; a kernel
  // without MADV_POPULATE_READ (before 5.14) faults the pages in on first use instead
  ::madvise(p, size, MADV_HUGEPAGE);
  ::madvise(p, size, kPopulateRead);
  return p;
}

}  // namespace mohge

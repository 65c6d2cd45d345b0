// defines: advise_huge_pages, alloc_huge_pages, free_huge_pages, map_file_huge_pages
// (core/huge_pages.h)
#include "core/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14; older C library headers lack it
#endif

namespace mohge {

namespace {
uintptr_t round_up(uintptr_t x, size_t to) { return (x + to - 1) / to * to; }
size_t huge_pages_size(size_t bytes) { return round_up(bytes, kHugePageBytes); }
}  // namespace

void advise_huge_pages(void* p, size_t bytes) {
  const uintptr_t begin = round_up(reinterpret_cast<uintptr_t>(p), kHugePageBytes);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) / kHugePageBytes * kHugePageBytes;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

void* alloc_huge_pages(size_t bytes) {
  if (bytes == 0) return nullptr;
  // reserve one page more than needed, keep its 2 MiB-aligned part, give the rest back
  const size_t size = huge_pages_size(bytes), reserve = size + kHugePageBytes;
  void* r = ::mmap(nullptr, reserve, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (r == MAP_FAILED) return nullptr;
  char* base = static_cast<char*>(r);
  char* p = reinterpret_cast<char*>(round_up(reinterpret_cast<uintptr_t>(base), kHugePageBytes));
  if (p > base) ::munmap(base, p - base);
  if (base + reserve > p + size) ::munmap(p + size, base + reserve - (p + size));
  advise_huge_pages(p, size);
  return p;
}

void free_huge_pages(void* p, size_t bytes) {
  if (p) ::munmap(p, huge_pages_size(bytes));
}

void* map_file_huge_pages(int fd, size_t size) {
  // On a filesystem with large folios (ext4, xfs, tmpfs) the kernel places a mapping this large on
  // a 2 MiB boundary itself (thp_get_unmapped_area); elsewhere it gets 4 KiB page-table entries.
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) return nullptr;
  // advised before populating, so the faults map (and read ahead) whole 2 MiB folios; a kernel
  // without MADV_POPULATE_READ (before 5.14) populates the mapping made again with MAP_POPULATE
  ::madvise(p, size, MADV_HUGEPAGE);
  if (::madvise(p, size, MADV_POPULATE_READ) != 0 &&
      ::mmap(p, size, PROT_READ, MAP_PRIVATE | MAP_FIXED | MAP_POPULATE, fd, 0) == MAP_FAILED) {
    ::munmap(p, size);
    return nullptr;
  }
  return p;
}

}  // namespace mohge

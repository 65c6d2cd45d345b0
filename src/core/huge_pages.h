// defines: kHugePageBytes, advise_huge_pages, alloc_huge_pages, map_file_huge_pages — 2 MiB
// pages for the weights
// inference reads whole: a checkpoint's mapping and the backend's bf16 copies.
// Why: a first touch costs per 4 KiB page, and in a virtual machine (shadow or nested paging) that
// cost dominates: on the 2-vCPU development VM the first pass over a 33 MB weight mapping took
// 10 ms at 4 KiB pages and 1.2 ms at 2 MiB, and filling 17 MB of fresh heap ~55 ms against ~5.
// Decode, which streams the weights, also misses the TLB less. Not for every large buffer: that
// slowed MoE training (CpuBackend::set_inference_weights). Best effort: where the kernel has no
// transparent huge pages (or they are off) the calls change nothing but speed.
#pragma once
#include <cstddef>

namespace mohge {

inline constexpr size_t kHugePageBytes = size_t{2} << 20;

// Advises transparent huge pages (madvise MADV_HUGEPAGE) for the whole 2 MiB pages inside
// [p, p + bytes); nothing when there are none. Never fails.
void advise_huge_pages(void* p, size_t bytes);

// bytes of zeroed memory from an anonymous mapping of its own on a 2 MiB boundary, advised huge
// pages: a whole page at a first touch. Its own mapping, not the malloc heap's: the advice would
// outlive a free there and reach later allocations. nullptr when out of memory or bytes is 0.
// Release with free_huge_pages(p, bytes), which takes the same bytes.
void* alloc_huge_pages(size_t bytes);
void free_huge_pages(void* p, size_t bytes);

// Maps `size` bytes of the file fd read-only (MAP_PRIVATE), advises huge pages and populates the
// page tables. A page cache holding the file in 2 MiB folios (safetensors_write writes in such
// units; a file read from disk through this mapping is read ahead in them) is then mapped a 2 MiB
// page at a time; otherwise, as before, in 4 KiB pages. Returns nullptr when the mapping fails
// (errno set). Release with munmap(p, size).
void* map_file_huge_pages(int fd, size_t size);

}  // namespace mohge

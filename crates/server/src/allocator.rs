//! [`SplitAllocator`]: the binary's global allocator — mimalloc for small allocations, the system
//! allocator for large ones.
//!
//! The two kinds of memory this process churns want different allocators. The gate's per-request
//! allocations (headers, tokens, JSON, audit records: thousands per second, each a few hundred bytes)
//! spent about 15 % of a saturated core in glibc's malloc, and mimalloc halves that
//! (`benches/RESULTS.md`, the gate under wrk). The engine's buffers (KV caches, activations, logits
//! rows, request bodies: tens of kilobytes to megabytes, coming and going with the number of sequences)
//! are few, and mimalloc keeps freed ones mapped for reuse, so resident memory swung by ±10 MB with the
//! soak's concurrency and sat 70 MB above glibc's; glibc maps each of them on its own and unmaps it when
//! freed, so resident memory follows what is in use. The split is by size alone, so a pointer always
//! goes back to the allocator that made it: both `dealloc` and `realloc` are told the allocation's size.
//!
//! glibc only keeps that promise with its threshold fixed: by default it raises the threshold to the
//! size of each mapped block freed (up to 32 MiB), after which the engine's buffers come from its heap
//! arenas, are kept there when freed, and resident memory drifts with the mix of sizes in flight (a
//! 20-minute soak: +20 MB after warm-up). [`fix_large_allocation_threshold`], called first thing in
//! `main`, pins it at [`LARGE_ALLOCATION`].

use std::alloc::{GlobalAlloc, Layout, System};

use mimalloc::MiMalloc;

/// Allocations of at least this many bytes go to the system allocator: glibc's default threshold for
/// serving an allocation with its own mapping.
pub const LARGE_ALLOCATION: usize = 128 * 1024;

/// Pins glibc's mmap threshold at [`LARGE_ALLOCATION`], so every allocation the system allocator gets
/// from [`SplitAllocator`] is its own mapping, returned to the operating system when freed (see the
/// module's documentation). Returns whether the threshold was set: `false` on C libraries other than
/// glibc, which have no such knob (musl always maps large blocks on their own).
pub fn fix_large_allocation_threshold() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let threshold = libc::c_int::try_from(LARGE_ALLOCATION).unwrap_or(libc::c_int::MAX);
        // SAFETY: `mallopt` only changes the allocator's tuning; M_MMAP_THRESHOLD accepts any value up
        // to 32 MiB and returns 0 (leaving the setting alone) otherwise.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, threshold) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// mimalloc below [`LARGE_ALLOCATION`] bytes, the system allocator from there up.
#[derive(Debug, Default, Clone, Copy)]
pub struct SplitAllocator;

fn is_large(size: usize) -> bool {
    size >= LARGE_ALLOCATION
}

// SAFETY: every method forwards to one of two allocators chosen by the allocation's size, which the
// caller passes unchanged to `dealloc` and `realloc` (the `GlobalAlloc` contract), so memory is always
// returned to the allocator that made it; a `realloc` that crosses the threshold allocates from the
// other one, copies and frees, as the trait's default does.
unsafe impl GlobalAlloc for SplitAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout is passed on unchanged.
        unsafe { if is_large(layout.size()) { System.alloc(layout) } else { MiMalloc.alloc(layout) } }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe { if is_large(layout.size()) { System.alloc_zeroed(layout) } else { MiMalloc.alloc_zeroed(layout) } }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `layout` is the one `ptr` was allocated with, so its size picks the same allocator.
        unsafe {
            if is_large(layout.size()) {
                System.dealloc(ptr, layout);
            } else {
                MiMalloc.dealloc(ptr, layout);
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if is_large(layout.size()) == is_large(new_size) {
            // SAFETY: old and new size pick the same allocator, the one that made `ptr`.
            return unsafe {
                if is_large(new_size) {
                    System.realloc(ptr, layout, new_size)
                } else {
                    MiMalloc.realloc(ptr, layout, new_size)
                }
            };
        }
        // SAFETY: the caller guarantees `new_size`, rounded up to `layout.align()`, does not overflow.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a fresh allocation from the allocator the new size belongs to; on success the old
        // contents (the smaller of the two sizes) are copied and the old block freed where it came from.
        unsafe {
            let moved = self.alloc(new_layout);
            if !moved.is_null() {
                std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            moved
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_survive_growing_and_shrinking_across_the_threshold() {
        let a = SplitAllocator;
        let small = Layout::from_size_align(1000, 16).unwrap();
        unsafe {
            let p = a.alloc(small);
            assert!(!p.is_null());
            for i in 0..1000 {
                *p.add(i) = (i % 251) as u8;
            }
            // Small (mimalloc) → large (system).
            let big = a.realloc(p, small, 3 * LARGE_ALLOCATION);
            assert!(!big.is_null());
            assert!((0..1000).all(|i| *big.add(i) == (i % 251) as u8));
            *big.add(3 * LARGE_ALLOCATION - 1) = 7;
            // Large → large stays with the system allocator.
            let big_layout = Layout::from_size_align(3 * LARGE_ALLOCATION, 16).unwrap();
            let bigger = a.realloc(big, big_layout, 4 * LARGE_ALLOCATION);
            assert_eq!(*bigger.add(3 * LARGE_ALLOCATION - 1), 7);
            // Large (system) → small (mimalloc).
            let bigger_layout = Layout::from_size_align(4 * LARGE_ALLOCATION, 16).unwrap();
            let back = a.realloc(bigger, bigger_layout, 500);
            assert!((0..500).all(|i| *back.add(i) == (i % 251) as u8));
            assert_eq!(back as usize % 16, 0, "alignment kept");
            a.dealloc(back, Layout::from_size_align(500, 16).unwrap());
        }
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn large_blocks_are_returned_to_the_system_once_the_threshold_is_fixed() {
        assert!(fix_large_allocation_threshold());
        let a = SplitAllocator;
        // Free a large block first: with glibc's sliding threshold this would raise the threshold to
        // its size and put the next blocks of that size in the heap instead of their own mappings.
        let layout = Layout::from_size_align(4 * LARGE_ALLOCATION, 16).unwrap();
        unsafe {
            let first = a.alloc(layout);
            assert!(!first.is_null());
            a.dealloc(first, layout);
            let before = libc::mallinfo2();
            let blocks: Vec<*mut u8> = (0..8).map(|_| a.alloc(layout)).collect();
            let during = libc::mallinfo2();
            assert_eq!(during.hblks, before.hblks + 8, "each large block is its own mapping");
            for block in blocks {
                a.dealloc(block, layout);
            }
            let after = libc::mallinfo2();
            assert_eq!(after.hblkhd, before.hblkhd, "and every mapping is gone once freed");
        }
    }

    #[test]
    fn zeroed_allocations_are_zero_on_both_sides() {
        let a = SplitAllocator;
        for size in [64, LARGE_ALLOCATION - 1, LARGE_ALLOCATION, 2 * LARGE_ALLOCATION] {
            let layout = Layout::from_size_align(size, 64).unwrap();
            unsafe {
                let p = a.alloc_zeroed(layout);
                assert!(!p.is_null());
                assert_eq!(p as usize % 64, 0);
                assert!((0..size).all(|i| *p.add(i) == 0));
                a.dealloc(p, layout);
            }
        }
    }
}

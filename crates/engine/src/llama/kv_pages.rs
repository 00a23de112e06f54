//! [`KvPagePool`]: a model's freed KV-cache pages, kept for the next sequence instead of going back to
//! the allocator.
//!
//! A sequence's cache grows a page at a time and is dropped when the sequence ends, so under load the
//! process allocates and frees thousands of 24 KB pages a minute. Handed back to the allocator, they
//! left resident memory swinging by ±10 MB with the number and length of the sequences in flight (the
//! allocator keeps some freed pages and returns others), which reads as growth and hides a real leak.
//! Kept here, the pages in use plus the pages waiting settle at the busiest moment's KV use — what
//! llama.cpp reserves for its whole cache at start — and stay there; the scheduler bounds what is kept
//! by its KV budget (`kv_budget_mb`) plus the prefix cache's share, so a burst cannot pin more.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::kernels::attention_q8::Q8Page;

/// One f16 page: its keys and its values, each `kv_heads × head_dim × PAGE` elements.
pub(crate) type F16Page = (Vec<u16>, Vec<u16>);

/// Freed pages of one model, waiting for a sequence that needs one. Shared by every cache of the
/// model, whichever thread drops it.
#[derive(Debug, Default)]
pub(crate) struct KvPagePool {
    free: Mutex<FreePages>,
    /// The most bytes of free pages kept; pages handed back beyond it go to the allocator.
    retain_bytes: AtomicUsize,
}

#[derive(Debug, Default)]
struct FreePages {
    f16: Vec<F16Page>,
    q8: Vec<Q8Page>,
    bytes: usize,
}

fn f16_bytes(page: &F16Page) -> usize {
    (page.0.len() + page.1.len()) * std::mem::size_of::<u16>()
}

impl KvPagePool {
    /// Keeps up to `bytes` of freed pages from now on (the largest value asked for wins: two
    /// schedulers sharing a model each ask for their own budget).
    pub(crate) fn retain_up_to(&self, bytes: usize) {
        self.retain_bytes.fetch_max(bytes, Ordering::Relaxed);
    }

    /// Bytes of free pages waiting now.
    pub(crate) fn free_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// A zeroed f16 page of `len` keys and `len` values: a freed one when one of that size waits.
    pub(crate) fn take_f16(&self, len: usize) -> F16Page {
        let reused = {
            let mut free = self.lock();
            let at = free.f16.iter().rposition(|page| page.0.len() == len && page.1.len() == len);
            at.map(|at| {
                let page = free.f16.swap_remove(at);
                free.bytes -= f16_bytes(&page);
                page
            })
        };
        match reused {
            Some(mut page) => {
                page.0.fill(0);
                page.1.fill(0);
                page
            }
            None => (vec![0; len], vec![0; len]),
        }
    }

    /// A zeroed 8-bit page for `kv_heads` heads of `head_dim` and `positions` positions: a freed one
    /// when one of that shape waits.
    pub(crate) fn take_q8(&self, kv_heads: usize, head_dim: usize, positions: usize) -> Q8Page {
        let reused = {
            let mut free = self.lock();
            let at = free.q8.iter().rposition(|page| page.holds(kv_heads, head_dim, positions));
            at.map(|at| {
                let page = free.q8.swap_remove(at);
                free.bytes -= page.bytes();
                page
            })
        };
        match reused {
            Some(mut page) => {
                page.clear();
                page
            }
            None => Q8Page::new(kv_heads, head_dim, positions),
        }
    }

    /// Keeps `pages` for later sequences, as many as the bound allows; the rest are freed.
    pub(crate) fn give_back_f16(&self, pages: impl IntoIterator<Item = F16Page>) {
        let retain = self.retain_bytes.load(Ordering::Relaxed);
        let mut free = self.lock();
        for page in pages {
            let bytes = f16_bytes(&page);
            if free.bytes + bytes <= retain {
                free.bytes += bytes;
                free.f16.push(page);
            }
        }
    }

    /// As [`Self::give_back_f16`], for 8-bit pages.
    pub(crate) fn give_back_q8(&self, pages: impl IntoIterator<Item = Q8Page>) {
        let retain = self.retain_bytes.load(Ordering::Relaxed);
        let mut free = self.lock();
        for page in pages {
            let bytes = page.bytes();
            if free.bytes + bytes <= retain {
                free.bytes += bytes;
                free.q8.push(page);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FreePages> {
        // A panic while holding the lock leaves only whole pages in the lists: still usable.
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_page_is_reused_zeroed() {
        let pool = KvPagePool::default();
        pool.retain_up_to(1 << 20);
        let mut page = pool.take_f16(1024);
        page.0[5] = 7;
        page.1[1023] = 9;
        let (keys, values) = (page.0.as_ptr(), page.1.as_ptr());
        pool.give_back_f16([page]);
        assert_eq!(pool.free_bytes(), 4096);
        let again = pool.take_f16(1024);
        assert_eq!((again.0.as_ptr(), again.1.as_ptr()), (keys, values), "the same memory");
        assert!(again.0.iter().chain(&again.1).all(|&x| x == 0), "and zeroed");
        assert_eq!(pool.free_bytes(), 0);
        // A page of another size is not handed out for this one.
        pool.give_back_f16([again]);
        assert_eq!(pool.take_f16(512).0.len(), 512);
        assert_eq!(pool.free_bytes(), 4096);
    }

    #[test]
    fn no_more_than_the_bound_is_kept() {
        let pool = KvPagePool::default();
        pool.give_back_f16([pool.take_f16(1024)]);
        assert_eq!(pool.free_bytes(), 0, "nothing is kept before a bound is set");
        pool.retain_up_to(10_000);
        pool.retain_up_to(5_000); // the larger bound stays
        let pages: Vec<F16Page> = (0..5).map(|_| pool.take_f16(1024)).collect();
        pool.give_back_f16(pages);
        assert_eq!(pool.free_bytes(), 8192, "two pages of 4 KB fit in 10,000 bytes, the third does not");
    }

    #[test]
    fn eight_bit_pages_are_reused_zeroed_too() {
        let pool = KvPagePool::default();
        pool.retain_up_to(1 << 20);
        let mut page = pool.take_q8(2, 64, 64);
        page.store(1, 64, 3, &[1.5; 64], &[-2.0; 64]);
        let bytes = page.bytes();
        pool.give_back_q8([page]);
        assert_eq!(pool.free_bytes(), bytes);
        let again = pool.take_q8(2, 64, 64);
        assert_eq!(pool.free_bytes(), 0, "the freed page was taken");
        assert!(again.is_zero());
        assert!(!pool.take_q8(2, 64, 32).holds(2, 64, 64), "another shape is a new page");
    }
}

//! The CPU pass's KV cache for one layer of one sequence: host memory in pages, f16 like llama.cpp's
//! default cache or 8-bit blocks (`kv_cache_type: q8_0`), laid out for the attention kernels to read in
//! place. Its own module because both the sequence-level `KvCache` and the CPU forward pass use it.

use std::sync::Arc;

use half::f16;

use crate::kernels::attention::KvHead;
use crate::kernels::attention_q8::{Q8Head, Q8Page};
use crate::llama::kv_cache_type::KvCacheType;
use crate::llama::kv_pages::KvPagePool;

/// Positions per KV-cache page: a sequence's cache grows a page at a time, so its memory follows its
/// length rather than its worst case (at most 63 positions, 1.4 MB for the default model, unused). A
/// KV head's 64 positions are one contiguous 8 KB run of keys (and one of values) that attention
/// streams through in order; with 16-position pages it jumped to a new allocation every 2 KB.
pub(crate) const PAGE: usize = 64;

/// One layer's cached keys and values for one sequence, in pages of [`PAGE`] positions: rounded to f16
/// like llama.cpp's default cache and laid out as [`KvHead`] describes, or to 8-bit blocks as
/// [`Q8Page`] describes (`kv_cache_type: q8_0`). Pages come from the model's [`KvPagePool`] and go back
/// to it when the cache is dropped.
#[derive(Debug)]
pub(crate) struct HostLayerCache {
    kv_heads: usize,
    head_dim: usize,
    pages: Pages,
    pool: Arc<KvPagePool>,
}

/// The pages of one cache, in its element type.
#[derive(Debug)]
enum Pages {
    F16(Vec<(Vec<u16>, Vec<u16>)>),
    Q8(Vec<Q8Page>),
}

impl Drop for HostLayerCache {
    /// The pages go back to the model's pool for the next sequence (see [`KvPagePool`]).
    fn drop(&mut self) {
        match &mut self.pages {
            Pages::F16(pages) => self.pool.give_back_f16(pages.drain(..)),
            Pages::Q8(pages) => self.pool.give_back_q8(pages.drain(..)),
        }
    }
}

/// One KV head's positions, read in place by the attention kernel for the cache's type.
#[derive(Clone, Copy)]
pub(crate) enum HeadView<'a> {
    /// Keys and values in f16.
    F16(KvHead<'a>),
    /// Keys and values in 8-bit blocks.
    Q8(Q8Head<'a>),
}

impl HostLayerCache {
    /// An empty cache; pages are taken from `pool` as positions are written.
    pub(crate) fn new(kv_heads: usize, head_dim: usize, kind: KvCacheType, pool: Arc<KvPagePool>) -> Self {
        let pages = match kind {
            KvCacheType::F16 => Pages::F16(Vec::new()),
            KvCacheType::Q8_0 => Pages::Q8(Vec::new()),
        };
        Self { kv_heads, head_dim, pages, pool }
    }

    /// Bytes of keys and values one position takes in one layer.
    pub(crate) fn bytes_per_position(kv_heads: usize, head_dim: usize, kind: KvCacheType) -> usize {
        match kind {
            KvCacheType::F16 => 2 * kv_heads * head_dim * std::mem::size_of::<u16>(),
            KvCacheType::Q8_0 => kv_heads * Q8Page::bytes_per_position(head_dim),
        }
    }

    /// Writes one position's keys and values for KV head `kv`.
    pub(crate) fn store(&mut self, position: usize, kv: usize, keys: &[f32], values: &[f32]) {
        let (kv_heads, head_dim) = (self.kv_heads, self.head_dim);
        match &mut self.pages {
            Pages::F16(pages) => {
                let page_len = kv_heads * head_dim * PAGE;
                while pages.len() <= position / PAGE {
                    pages.push(self.pool.take_f16(page_len));
                }
                for dim in 0..head_dim {
                    let (page, at) = KvHead::slot(kv, head_dim, PAGE, position, dim);
                    let (k, v) = &mut pages[page];
                    k[at] = f16::from_f32(keys[dim]).to_bits();
                    v[at] = f16::from_f32(values[dim]).to_bits();
                }
            }
            Pages::Q8(pages) => {
                while pages.len() <= position / PAGE {
                    pages.push(self.pool.take_q8(kv_heads, head_dim, PAGE));
                }
                pages[position / PAGE].store(kv, PAGE, position % PAGE, keys, values);
            }
        }
    }

    /// A copy of the first `len` positions (whole pages; positions past `len` in the last page are
    /// overwritten when the copy grows).
    pub(crate) fn copy_prefix(&self, len: usize) -> Self {
        let whole = |pages: usize| len.div_ceil(PAGE).min(pages);
        let (kv_heads, head_dim, pool) = (self.kv_heads, self.head_dim, &self.pool);
        let pages = match &self.pages {
            Pages::F16(pages) => Pages::F16(
                pages[..whole(pages.len())]
                    .iter()
                    .map(|(keys, values)| {
                        let mut copy = pool.take_f16(keys.len());
                        copy.0.copy_from_slice(keys);
                        copy.1.copy_from_slice(values);
                        copy
                    })
                    .collect(),
            ),
            Pages::Q8(pages) => Pages::Q8(
                pages[..whole(pages.len())]
                    .iter()
                    .map(|page| {
                        let mut copy = pool.take_q8(kv_heads, head_dim, PAGE);
                        copy.copy_from(page);
                        copy
                    })
                    .collect(),
            ),
        };
        Self { kv_heads, head_dim, pages, pool: pool.clone() }
    }

    /// Positions the allocated pages can hold (what this layer's memory amounts to).
    pub(crate) fn allocated_positions(&self) -> usize {
        PAGE * match &self.pages {
            Pages::F16(pages) => pages.len(),
            Pages::Q8(pages) => pages.len(),
        }
    }

    /// Whether this cache holds 8-bit keys and values.
    pub(crate) fn is_q8(&self) -> bool {
        matches!(self.pages, Pages::Q8(_))
    }

    /// KV head `kv`'s positions, for attention to read in place.
    pub(crate) fn head(&self, kv: usize) -> HeadView<'_> {
        let (head_dim, page) = (self.head_dim, PAGE);
        match &self.pages {
            Pages::F16(pages) => HeadView::F16(KvHead { pages, kv, head_dim, page }),
            Pages::Q8(pages) => HeadView::Q8(Q8Head { pages, kv, head_dim, page }),
        }
    }
}

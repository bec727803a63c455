//! The in-process read cache. Entries are answers to read queries; they are dropped whenever
//! the catalogue version moves on: at once after this replica's own writes, and within the
//! refresh interval after another replica's (the version lives in the database). Versions only
//! grow, so a stale read of the version (one taken before a local write committed) never
//! drops entries a second time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use esim_proto::catalog::v1::{ListCountriesResponse, ListProductsResponse, Product};

/// Entries beyond this drop the whole cache (a crude bound; queries repeat a lot).
const MAX_ENTRIES: usize = 10_000;

/// A cached answer.
#[derive(Debug, Clone)]
pub enum Cached {
    /// A `ListProducts` page.
    Products(Arc<ListProductsResponse>),
    /// A `ListCountries` page.
    Countries(Arc<ListCountriesResponse>),
    /// A `GetProduct` answer (`None`: not found).
    Product(Option<Arc<Product>>),
}

/// The cache.
#[derive(Debug, Default)]
pub struct Cache {
    /// The catalogue version the entries belong to.
    version: AtomicI64,
    /// Bumped on every clear, so an answer computed before a clear is never stored after it.
    generation: AtomicU64,
    entries: RwLock<HashMap<String, Cached>>,
}

impl Cache {
    /// The generation to pass to [`Cache::put`] for an answer about to be computed.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The cached answer for `key`.
    pub fn get(&self, key: &str) -> Option<Cached> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Stores an answer computed in `generation` (dropped if the cache was cleared since).
    pub fn put(&self, key: String, generation: u64, value: Cached) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, value);
    }

    /// Drops everything.
    fn clear(&self) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }

    /// Records a catalogue version, read from the database or just written; clears when it
    /// is newer than any seen before.
    pub fn observe(&self, version: i64) {
        if self.version.fetch_max(version, Ordering::SeqCst) < version {
            self.clear();
        }
    }

    /// Number of entries (tests).
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clear_between_compute_and_put_wins() {
        let cache = Cache::default();
        let generation = cache.generation();
        cache.clear();
        cache.put("k".into(), generation, Cached::Product(None));
        assert!(cache.get("k").is_none());
        cache.put("k".into(), cache.generation(), Cached::Product(None));
        assert!(cache.get("k").is_some());
        cache.observe(0);
        assert!(cache.get("k").is_some(), "same version keeps entries");
        cache.observe(1);
        assert!(cache.is_empty());
    }

    #[test]
    fn a_stale_version_read_keeps_entries() {
        let cache = Cache::default();
        cache.observe(2); // this replica's write
        cache.put("k".into(), cache.generation(), Cached::Product(None));
        cache.observe(1); // a refresh that read the version before the write committed
        assert!(cache.get("k").is_some());
        cache.observe(3); // another replica's write
        assert!(cache.is_empty());
    }
}

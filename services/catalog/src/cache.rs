//! The in-process read cache. Entries are answers to read queries; they are dropped whenever
//! the catalogue version changes: at once after this replica's own writes (which record the
//! version they wrote), and within the refresh interval after another replica's (the version
//! lives in the database). A refresh whose read raced a local write is discarded, so neither
//! drops the entries twice. Any change counts, a lower version too (a database restored from a
//! backup).

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

    /// Drops everything and records `version` (under the entries' lock, so a concurrent
    /// [`Cache::refreshed`] sees either all of it or none).
    fn reset(&self, entries: &mut HashMap<String, Cached>, version: i64) {
        self.version.store(version, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }

    /// After a local write that stored catalogue `version`: drops everything.
    pub fn written(&self, version: i64) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        self.reset(&mut entries, version);
    }

    /// A version read from the database by a refresh that began in `generation`: drops
    /// everything when it differs from the one recorded, unless a local write came in between
    /// (the read may predate it; the next refresh reads again).
    pub fn refreshed(&self, version: i64, generation: u64) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::SeqCst) == generation
            && self.version.load(Ordering::SeqCst) != version
        {
            self.reset(&mut entries, version);
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
        cache.written(1);
        cache.put("k".into(), generation, Cached::Product(None));
        assert!(cache.get("k").is_none());
        cache.put("k".into(), cache.generation(), Cached::Product(None));
        assert!(cache.get("k").is_some());
        cache.refreshed(1, cache.generation());
        assert!(cache.get("k").is_some(), "same version keeps entries");
        cache.refreshed(2, cache.generation());
        assert!(cache.is_empty());
    }

    #[test]
    fn a_refresh_that_raced_a_local_write_is_discarded() {
        let cache = Cache::default();
        let refresh_began = cache.generation();
        cache.written(2); // this replica's write commits while the refresh reads
        cache.put("k".into(), cache.generation(), Cached::Product(None));
        cache.refreshed(1, refresh_began); // the refresh read the version before the commit
        assert!(cache.get("k").is_some());
        cache.refreshed(2, cache.generation());
        assert!(cache.get("k").is_some(), "the version this replica wrote");
    }

    #[test]
    fn any_other_version_drops_the_entries() {
        let cache = Cache::default();
        cache.written(5);
        cache.put("k".into(), cache.generation(), Cached::Product(None));
        cache.refreshed(3, cache.generation()); // a database restored from a backup
        assert!(cache.is_empty());
        cache.put("k".into(), cache.generation(), Cached::Product(None));
        cache.refreshed(6, cache.generation()); // another replica's write
        assert!(cache.is_empty());
    }
}

//! The active API keys in memory, so authenticating a call never touches the database.
//!
//! A [`Snapshot`] of every active key is built from the database and swapped in whole; a call
//! clones the current `Arc` under a read lock held for nothing else and works on that. The
//! snapshot is rebuilt every `GATEWAY_KEY_REFRESH_SECS` (default 2 s) and right after a change
//! made through this gateway, so a revocation or scope change reaches every replica within
//! seconds. If the database cannot be read, the last snapshot stays in force (logged).
//!
//! Each key carries one rate-limit bucket per granted scope. A rebuild hands a key the buckets
//! it had (with their state) while their limit is unchanged, and new ones when it changed.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::entity::api_key;
use crate::keys::KeyHash;
use crate::ratelimit::{Bucket, ScopeLimits};
use crate::scopes::{Scope, ScopeSet};
use crate::store;

/// Who made a call: put in the request's extensions by [`crate::auth::Authorized`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's resource name, `apiKeys/{api_key}`.
    pub name: Arc<str>,
    /// The key's shown prefix (`esk_7Fq2`).
    pub key_prefix: Arc<str>,
}

/// Why an active key may not make a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The key does not grant the scope.
    NotGranted,
    /// The key's bucket for the scope is empty for this long.
    RateLimited(Duration),
}

/// An active key as authentication needs it.
#[derive(Debug)]
pub struct ActiveKey {
    caller: Caller,
    hash: KeyHash,
    /// One bucket per granted scope (by [`Scope::index`]); none for a scope not granted.
    buckets: [Option<Arc<Bucket>>; 3],
}

impl ActiveKey {
    /// Who this key is.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// Admits one call needing `scope`: the scope is granted and its bucket has a token.
    pub fn admit(&self, scope: Scope) -> Result<(), Refusal> {
        match &self.buckets[scope.index()] {
            Some(bucket) => bucket.take().map_err(Refusal::RateLimited),
            None => Err(Refusal::NotGranted),
        }
    }
}

/// Every active key at one moment, indexed by the head of its hash.
#[derive(Debug, Default)]
pub struct Snapshot {
    by_hash: HashMap<u64, Vec<Arc<ActiveKey>>>,
}

impl Snapshot {
    /// The active key whose hash is `hash`, compared in constant time.
    pub fn find(&self, hash: &KeyHash) -> Option<&Arc<ActiveKey>> {
        self.by_hash
            .get(&hash.bucket())?
            .iter()
            .find(|key| key.hash.matches(hash))
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.by_hash.values().map(Vec::len).sum()
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The snapshot of `rows`, reusing `previous`'s buckets where the limit is unchanged.
    fn build(rows: &[api_key::Model], previous: &Snapshot, defaults: &ScopeLimits) -> Self {
        let mut by_hash: HashMap<u64, Vec<Arc<ActiveKey>>> = HashMap::with_capacity(rows.len());
        for row in rows {
            let (Some(hash), Ok(scopes)) =
                (KeyHash::from_hex(&row.key_hash), ScopeSet::from_text(&row.scopes))
            else {
                tracing::warn!(api_key = %store::resource_name(&row.id), "stored API key unreadable; it authenticates nothing");
                continue;
            };
            let own_limit = store::stored_limit(row);
            let old = previous.find(&hash);
            let buckets = Scope::ALL.map(|scope| {
                if !scopes.contains(scope) {
                    return None;
                }
                let limit = own_limit.unwrap_or_else(|| defaults.of(scope));
                let kept = old
                    .and_then(|old| old.buckets[scope.index()].as_ref())
                    .filter(|bucket| bucket.limit() == limit);
                Some(kept.cloned().unwrap_or_else(|| Arc::new(Bucket::new(limit))))
            });
            let key = ActiveKey {
                caller: Caller {
                    name: store::resource_name(&row.id).into(),
                    key_prefix: row.key_prefix.as_str().into(),
                },
                hash,
                buckets,
            };
            by_hash.entry(hash.bucket()).or_default().push(Arc::new(key));
        }
        Self { by_hash }
    }
}

/// The current snapshot and how to rebuild it.
#[derive(Debug)]
pub struct KeyCache {
    current: RwLock<Arc<Snapshot>>,
    defaults: ScopeLimits,
    /// One rebuild at a time, so a slow rebuild cannot replace a newer one's snapshot.
    rebuilding: Mutex<()>,
}

impl KeyCache {
    /// An empty cache (nothing authenticates until [`Self::refresh`]), with `defaults` for keys
    /// without their own rate limit.
    pub fn new(defaults: ScopeLimits) -> Self {
        Self {
            current: RwLock::new(Arc::new(Snapshot::default())),
            defaults,
            rebuilding: Mutex::new(()),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        // A poisoned lock still holds a whole snapshot: swaps are single assignments.
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The active key `key`, if any.
    pub fn lookup(&self, key: &str) -> Option<Arc<ActiveKey>> {
        let hash = KeyHash::of(key);
        self.snapshot().find(&hash).cloned()
    }

    /// Rebuilds the snapshot from the database; returns how many keys are active.
    pub async fn refresh(&self, db: &DatabaseConnection) -> Result<usize, DbErr> {
        let _one_at_a_time = self.rebuilding.lock().await;
        let rows = store::active(db).await?;
        let next = Arc::new(Snapshot::build(&rows, &self.snapshot(), &self.defaults));
        let count = next.len();
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = next;
        Ok(count)
    }

    /// Rebuilds the snapshot every `every` until `shutdown`.
    pub fn spawn_refresher(
        self: &Arc<Self>,
        db: DatabaseConnection,
        every: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let cache = self.clone();
        tokio::spawn(async move {
            let every = every.max(Duration::from_millis(10));
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                if let Err(err) = cache.refresh(&db).await {
                    tracing::warn!(error = %err, "cannot refresh the API keys; the last ones read stay in force");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::keys;
    use crate::ratelimit::Limit;

    fn row(key: &str, scopes: &str, limit: Option<(i32, i32)>) -> api_key::Model {
        api_key::Model {
            id: uuid::Uuid::now_v7().simple().to_string(),
            display_name: "test".into(),
            scopes: scopes.into(),
            key_prefix: keys::shown_prefix(key).into(),
            key_hash: KeyHash::of(key).to_hex(),
            rate_limit_rps: limit.map(|l| l.0),
            rate_limit_burst: limit.map(|l| l.1),
            state: store::ACTIVE.into(),
            create_time: Utc::now(),
            update_time: Utc::now(),
            revoke_time: None,
        }
    }

    #[test]
    fn keys_are_found_by_hash_with_their_scopes_and_buckets() {
        let key = keys::generate().unwrap().key;
        let other = keys::generate().unwrap().key;
        let defaults = ScopeLimits::default();
        let snapshot = Snapshot::build(&[row(&key, "read,order", None)], &Snapshot::default(), &defaults);
        assert_eq!(snapshot.len(), 1);
        let found = snapshot.find(&KeyHash::of(&key)).unwrap();
        assert_eq!(
            found.buckets[Scope::Order.index()].as_ref().unwrap().limit(),
            defaults.order
        );
        assert_eq!(found.admit(Scope::Read), Ok(()));
        assert_eq!(found.admit(Scope::Order), Ok(()));
        assert_eq!(found.admit(Scope::Admin), Err(Refusal::NotGranted));
        assert!(snapshot.find(&KeyHash::of(&other)).is_none());
    }

    #[test]
    fn a_rebuild_keeps_bucket_state_until_the_limit_changes() {
        let key = keys::generate().unwrap().key;
        let defaults = ScopeLimits::default();
        let hash = KeyHash::of(&key);
        let mut stored = row(&key, "read", Some((1, 2)));
        let first = Snapshot::build(std::slice::from_ref(&stored), &Snapshot::default(), &defaults);
        let key_v1 = first.find(&hash).unwrap();
        key_v1.admit(Scope::Read).unwrap();
        key_v1.admit(Scope::Read).unwrap();
        assert!(matches!(key_v1.admit(Scope::Read), Err(Refusal::RateLimited(_))));

        // Same limit: the emptied bucket carries over, so a refresh is no way around a limit.
        let second = Snapshot::build(std::slice::from_ref(&stored), &first, &defaults);
        assert!(second.find(&hash).unwrap().admit(Scope::Read).is_err());

        // A new limit: a new, full bucket.
        stored.rate_limit_rps = Some(5);
        stored.rate_limit_burst = Some(5);
        let third = Snapshot::build(std::slice::from_ref(&stored), &second, &defaults);
        let key_v3 = third.find(&hash).unwrap();
        assert_eq!(
            key_v3.buckets[Scope::Read.index()].as_ref().unwrap().limit(),
            Limit::new(5, 5).unwrap()
        );
        key_v3.admit(Scope::Read).unwrap();
    }

    #[test]
    fn unreadable_rows_are_skipped() {
        let key = keys::generate().unwrap().key;
        let mut broken = row(&key, "read,superuser", None);
        let snapshot = Snapshot::build(
            std::slice::from_ref(&broken),
            &Snapshot::default(),
            &ScopeLimits::default(),
        );
        assert!(snapshot.is_empty());
        broken.scopes = "read".into();
        broken.key_hash = "not hex".into();
        let snapshot = Snapshot::build(&[broken], &Snapshot::default(), &ScopeLimits::default());
        assert!(snapshot.is_empty());
    }
}

//! Current usage from stored snapshots, refreshed from the upstream when too old.

use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime, Utc};
use esim_upstream::UpstreamError;
use esim_upstream::mp::Traffic;
use esim_upstream::sft::AddonInfo;

use crate::Core;
use crate::entity::{esim, snapshot};
use crate::error::{Result, UsageError};
use crate::store::{self, NewSnapshot};

/// What a read serves: the snapshot (if any) and, when it is stale, why.
#[derive(Debug, Clone)]
pub struct Current {
    pub snapshot: Option<snapshot::Model>,
    pub stale_reason: Option<String>,
}

/// What the upstream said.
enum Fetched {
    Snapshot(NewSnapshot),
    /// The upstream knows nothing of this eSIM (yet).
    Nothing,
    /// The provider has no usage query (FMS).
    Unsupported,
}

/// MP sends platform-local times without a zone; the sandbox (and, as far as the docs tell,
/// the platform) use UTC, so they are read as UTC.
fn mp_time(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One snapshot from the traffic rows of every order code. Identical rows are one package:
/// the sandbox (and MP for top-ups) answers an alias code with the same order.
pub fn mp_snapshot(rows: &[Traffic]) -> NewSnapshot {
    let mut distinct: Vec<&Traffic> = Vec::new();
    for row in rows {
        if !distinct.contains(&row) {
            distinct.push(row);
        }
    }
    NewSnapshot {
        total_bytes: clamp_i64(distinct.iter().filter_map(|r| r.total_bytes).sum()),
        used_bytes: clamp_i64(distinct.iter().filter_map(|r| r.used_bytes).sum()),
        unlimited: false,
        validity_start: distinct.iter().filter_map(|r| r.actual_start).min().map(mp_time),
        validity_end: distinct.iter().filter_map(|r| r.planned_end).max().map(mp_time),
        source: "mp.queryTraffic",
    }
}

/// One snapshot from an endpoint's add-ons: those whose validity has not ended count (an
/// exhausted one still shows 100 % used); when all ended, the newest one.
pub fn sft_snapshot(addons: &[AddonInfo], now: DateTime<Utc>) -> Option<NewSnapshot> {
    let mut current: Vec<&AddonInfo> = addons
        .iter()
        .filter(|a| a.valid_to.is_none_or(|end| end.with_timezone(&Utc) > now))
        .collect();
    if current.is_empty() {
        current = addons.iter().max_by_key(|a| a.valid_from).into_iter().collect();
    }
    if current.is_empty() {
        return None;
    }
    let (mut total, mut used) = (0u64, 0u64);
    for addon in &current {
        // Data counters are named "Data"; an unnamed counter counts as data too.
        for c in addon.counters.iter().filter(|c| {
            c.name
                .as_deref()
                .is_none_or(|n| n.to_ascii_lowercase().contains("data"))
        }) {
            total = total.saturating_add(c.total_bytes.unwrap_or(0));
            used = used.saturating_add(c.used_bytes.unwrap_or(0));
        }
    }
    Some(NewSnapshot {
        total_bytes: clamp_i64(total),
        used_bytes: clamp_i64(used),
        unlimited: false,
        validity_start: current
            .iter()
            .filter_map(|a| a.valid_from)
            .min()
            .map(|t| t.with_timezone(&Utc)),
        validity_end: current
            .iter()
            .filter_map(|a| a.valid_to)
            .max()
            .map(|t| t.with_timezone(&Utc)),
        source: "sft.addonDetails",
    })
}

impl Core {
    fn refresh_lock(&self, esim_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .refresh_locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if locks.len() > 1024 {
            // Only entries nobody holds or waits for.
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        locks.entry(esim_id.to_owned()).or_default().clone()
    }

    fn is_fresh(&self, snap: &snapshot::Model, now: DateTime<Utc>) -> bool {
        let age = now.signed_duration_since(snap.taken_at);
        age.to_std()
            .map_or(true, |age| age < self.config.snapshot_max_age)
    }

    /// The usage of `row`: the newest snapshot if fresh, else refreshed from the upstream;
    /// on an upstream failure the newest snapshot marked stale (none at all: UNAVAILABLE).
    pub async fn current(&self, row: &esim::Model, request_id: &str) -> Result<Current> {
        let latest = store::latest_snapshot(&self.db, &row.esim).await?;
        if let Some(s) = latest.as_ref().filter(|s| self.is_fresh(s, Utc::now())) {
            return Ok(Current {
                snapshot: Some(s.clone()),
                stale_reason: None,
            });
        }
        let lock = self.refresh_lock(&row.esim);
        let _guard = lock.lock().await;
        // Whoever held the lock may have just refreshed: then that snapshot serves.
        let latest = store::latest_snapshot(&self.db, &row.esim).await?;
        if let Some(s) = latest.as_ref().filter(|s| self.is_fresh(s, Utc::now())) {
            return Ok(Current {
                snapshot: Some(s.clone()),
                stale_reason: None,
            });
        }
        let codes = if row.provider == "MP" {
            store::mp_codes(&self.db, &row.esim).await?
        } else {
            Vec::new()
        };
        match self.fetch(row, &codes, request_id).await {
            Ok(Fetched::Snapshot(new)) => {
                let stored = store::insert_snapshot(&self.db, &row.esim, Utc::now(), &new).await?;
                Ok(Current {
                    snapshot: Some(stored),
                    stale_reason: None,
                })
            }
            Ok(Fetched::Nothing) => Ok(Current {
                stale_reason: latest
                    .as_ref()
                    .map(|_| format!("{} reports no usage for this eSIM now", row.provider)),
                snapshot: latest,
            }),
            Ok(Fetched::Unsupported) => Ok(Current {
                snapshot: latest,
                stale_reason: None,
            }),
            Err(err) => {
                tracing::warn!(esim = %row.esim, error = %err, "usage refresh failed");
                match latest {
                    Some(s) => Ok(Current {
                        snapshot: Some(s),
                        stale_reason: Some(err.to_string()),
                    }),
                    None => Err(UsageError::Unavailable(format!(
                        "no usage stored yet and the upstream is unavailable: {err}"
                    ))),
                }
            }
        }
    }

    async fn fetch(
        &self,
        row: &esim::Model,
        mp_codes: &[String],
        request_id: &str,
    ) -> Result<Fetched, UpstreamError> {
        match row.provider.as_str() {
            "MP" => {
                let mut rows = Vec::new();
                for code in mp_codes {
                    if let Some(found) = self.mp.query_traffic(code, request_id).await? {
                        rows.extend(found);
                    }
                }
                Ok(if rows.is_empty() {
                    Fetched::Nothing
                } else {
                    Fetched::Snapshot(mp_snapshot(&rows))
                })
            }
            "SFT" => {
                let Some(endpoint) = row.sft_endpoint_id.as_deref() else {
                    return Ok(Fetched::Nothing);
                };
                let addons = self.sft.addon_details(endpoint, request_id).await?;
                Ok(sft_snapshot(&addons, Utc::now()).map_or(Fetched::Nothing, Fetched::Snapshot))
            }
            _ => Ok(Fetched::Unsupported),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use esim_upstream::sft::Counter;

    use super::*;

    fn traffic(total: u64, used: u64) -> Traffic {
        Traffic {
            eid: None,
            package_code: Some("P1".into()),
            total_bytes: Some(total),
            used_bytes: Some(used),
            actual_start: None,
            planned_end: None,
            cycle_months: Some(1),
        }
    }

    #[test]
    fn mp_rows_of_alias_codes_count_once() {
        let a = traffic(100, 10);
        let mut b = traffic(200, 20);
        b.package_code = Some("P2".into());
        let snap = mp_snapshot(&[a.clone(), a, b]);
        assert_eq!((snap.total_bytes, snap.used_bytes), (300, 30));
    }

    #[test]
    fn sft_counts_current_addons_only() {
        let now = Utc.with_ymd_and_hms(2026, 1, 10, 0, 0, 0).unwrap();
        let addon = |from_day: u32, to_day: u32, total: u64, used: u64| AddonInfo {
            unique_id: format!("{from_day}"),
            end_point_id: None,
            plan_id: None,
            plan_name: None,
            status: None,
            valid_from: Some(
                Utc.with_ymd_and_hms(2026, 1, from_day, 0, 0, 0)
                    .unwrap()
                    .fixed_offset(),
            ),
            valid_to: Some(
                Utc.with_ymd_and_hms(2026, 1, to_day, 0, 0, 0)
                    .unwrap()
                    .fixed_offset(),
            ),
            benefit: None,
            counters: vec![Counter {
                name: Some("Data".into()),
                total_bytes: Some(total),
                used_bytes: Some(used),
                remaining_bytes: Some(total - used),
            }],
        };
        let snap = sft_snapshot(&[addon(1, 5, 100, 100), addon(8, 15, 50, 5)], now).unwrap();
        assert_eq!((snap.total_bytes, snap.used_bytes), (50, 5));
        // All ended: the newest one.
        let snap = sft_snapshot(&[addon(1, 5, 100, 100), addon(3, 9, 70, 7)], now).unwrap();
        assert_eq!((snap.total_bytes, snap.used_bytes), (70, 7));
        assert!(sft_snapshot(&[], now).is_none());
    }
}

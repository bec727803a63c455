//! Synthesises usage alerts for providers that push none (SFT, FMS) from snapshots: usage
//! thresholds (default 50/80/100 %) and "expires within 24 h". Replicas claim eSIMs through
//! a row lease (conditional UPDATE of `lease_until`), so no eSIM is polled twice at once.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use esim_proto::usage::v1::{AlertKind, AlertSource};

use crate::Core;
use crate::entity::{esim, snapshot};
use crate::error::Result;
use crate::store::{self, NewAlert};

/// Providers the poller covers: MP pushes its own alarms.
pub const POLLED: [&str; 2] = ["SFT", "FMS"];
/// eSIMs claimed per round.
const BATCH: u64 = 100;

/// Polls every `poll_interval` until shutdown.
pub async fn run(core: Arc<Core>) {
    let mut interval = tokio::time::interval(
        core.config
            .poll_interval
            .max(std::time::Duration::from_millis(50)),
    );
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = core.shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        match poll_once(&core).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(alerts = n, "poller stored alerts"),
            Err(err) => tracing::warn!(error = %err, "alert poll failed"),
        }
    }
}

/// One round: claims due eSIMs, refreshes their usage, stores crossed alerts. Returns how
/// many new alerts were stored.
pub async fn poll_once(core: &Core) -> Result<usize> {
    let now = Utc::now();
    let lease = chrono::Duration::from_std(core.config.poll_lease).unwrap_or(chrono::Duration::seconds(60));
    let next =
        now + chrono::Duration::from_std(core.config.poll_interval).unwrap_or(chrono::Duration::seconds(300));
    let mut stored = 0;
    for row in store::due_for_poll(&core.db, &POLLED, now, BATCH).await? {
        if !store::claim(&core.db, &row.esim, &core.instance, now, now + lease).await? {
            continue; // another replica has it
        }
        let mut alerted = alerted_set(&row.alerted);
        let result = poll_one(core, &row, &mut alerted).await;
        // The lease ends either way; a failed refresh is retried next round.
        store::release(&core.db, &row.esim, &core.instance, &alerted.join(","), next).await?;
        match result {
            Ok(n) => stored += n,
            Err(err) => tracing::warn!(esim = %row.esim, error = %err, "alert poll of an eSIM failed"),
        }
    }
    Ok(stored)
}

fn alerted_set(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn poll_one(core: &Core, row: &esim::Model, alerted: &mut Vec<String>) -> Result<usize> {
    let current = core.current(row, "usage-poller").await?;
    let mut stored = 0;
    for (tail, alert) in synthesise(
        row,
        current.snapshot.as_ref(),
        Utc::now(),
        &core.config.thresholds,
        core.config.expiry_window,
    ) {
        if alerted.contains(&tail) {
            continue;
        }
        if core.store_alert(alert).await?.is_some() {
            stored += 1;
        }
        alerted.push(tail);
    }
    Ok(stored)
}

/// The alerts `snap` (or, before one exists, the plan as sold) calls for at `now`, each with
/// its dedup-key tail (`u50`, `e<unix end>`).
pub fn synthesise(
    row: &esim::Model,
    snap: Option<&snapshot::Model>,
    now: DateTime<Utc>,
    thresholds: &[u8],
    expiry_window: std::time::Duration,
) -> Vec<(String, NewAlert)> {
    let base = |tail: &str, kind: AlertKind, percent: i32, expire: Option<DateTime<Utc>>| NewAlert {
        dedup_key: format!("esim:{}:{tail}", row.esim),
        esim: row.esim.clone(),
        order_name: row.order_name.clone(),
        provider: row.provider.clone(),
        kind: kind as i32,
        source: AlertSource::Poller as i32,
        threshold_percent: percent,
        expire_time: expire,
        mp_order_code: String::new(),
        mp_package_code: String::new(),
        eid: String::new(),
    };
    let mut out = Vec::new();
    if let Some(s) = snap.filter(|s| !s.unlimited) {
        let total = if s.total_bytes > 0 {
            s.total_bytes
        } else {
            row.plan_data_bytes
        };
        if total > 0 {
            for t in thresholds {
                if i128::from(s.used_bytes) * 100 >= i128::from(*t) * i128::from(total) {
                    let tail = format!("u{t}");
                    out.push((
                        tail.clone(),
                        base(&tail, AlertKind::UsageThreshold, i32::from(*t), None),
                    ));
                }
            }
        }
    }
    let end = snap.and_then(|s| s.validity_end).or(row.plan_end_time);
    let window = chrono::Duration::from_std(expiry_window).unwrap_or(chrono::Duration::days(1));
    if let Some(end) = end.filter(|end| *end > now && *end - now <= window) {
        let tail = format!("e{}", end.timestamp());
        out.push((tail.clone(), base(&tail, AlertKind::ExpiringSoon, 0, Some(end))));
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn row() -> esim::Model {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        esim::Model {
            esim: "e1".into(),
            order_name: "o1".into(),
            provider: "SFT".into(),
            iccid: None,
            sft_endpoint_id: Some("7000001".into()),
            fms_order_no: None,
            plan_data_bytes: 0,
            plan_end_time: None,
            alerted: String::new(),
            next_poll_time: t,
            lease_until: None,
            lease_owner: None,
            create_time: t,
            update_time: t,
        }
    }

    fn snap(total: i64, used: i64, end: Option<DateTime<Utc>>) -> snapshot::Model {
        snapshot::Model {
            id: 1,
            esim: "e1".into(),
            taken_at: Utc::now(),
            total_bytes: total,
            used_bytes: used,
            unlimited: false,
            validity_start: None,
            validity_end: end,
            source: "test".into(),
        }
    }

    #[test]
    fn thresholds_and_expiry() {
        let now = Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap();
        let day = std::time::Duration::from_secs(86_400);
        let tails = |s: &snapshot::Model| -> Vec<String> {
            synthesise(&row(), Some(s), now, &[50, 80, 100], day)
                .into_iter()
                .map(|(t, _)| t)
                .collect()
        };
        assert!(tails(&snap(1000, 499, None)).is_empty());
        assert_eq!(tails(&snap(1000, 800, None)), ["u50", "u80"]);
        assert_eq!(tails(&snap(1000, 1000, None)), ["u50", "u80", "u100"]);
        let soon = now + chrono::Duration::hours(23);
        assert_eq!(
            tails(&snap(1000, 0, Some(soon))),
            [format!("e{}", soon.timestamp())]
        );
        assert!(tails(&snap(1000, 0, Some(now + chrono::Duration::hours(25)))).is_empty());
        assert!(tails(&snap(1000, 0, Some(now - chrono::Duration::hours(1)))).is_empty());
        let alerts = synthesise(&row(), Some(&snap(10, 10, None)), now, &[100], day);
        assert_eq!(alerts[0].1.dedup_key, "esim:e1:u100");
        assert_eq!(alerts[0].1.threshold_percent, 100);
    }

    #[test]
    fn plan_as_sold_without_snapshot_gives_expiry_only() {
        let now = Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap();
        let mut r = row();
        r.plan_end_time = Some(now + chrono::Duration::hours(2));
        let alerts = synthesise(&r, None, now, &[50], std::time::Duration::from_secs(86_400));
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].1.kind, AlertKind::ExpiringSoon as i32);
    }
}

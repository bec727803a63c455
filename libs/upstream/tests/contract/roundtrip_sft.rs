//! SFT client ↔ sandbox: login and refresh, fetchSIM, lifecycle, add-ons, the 15 add-on cap.

use std::time::Duration;

use esim_upstream::config::SftConfig;
use esim_upstream::error::ErrorKind;
use esim_upstream::sft::{LifeCycle, SftClient, SimInfo, SimQuery};

use crate::sandbox_roundtrip::{MB, start, start_with};

const PLAN_3GB_15D: &str = "PLAN-TRAVEL-3GB-15D";

async fn first_available(sft: &SftClient) -> SimInfo {
    sft.fetch_sim(&SimQuery::available(1), "rt")
        .await
        .unwrap()
        .into_iter()
        .next()
        .expect("a Pre-Active, Attached SIM")
}

async fn by_iccid(sft: &SftClient, sim: &SimInfo) -> SimInfo {
    let rows = sft
        .fetch_sim(
            &SimQuery {
                iccid: Some(sim.iccid.clone()),
                ..Default::default()
            },
            "rt",
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows.into_iter().next().unwrap()
}

#[tokio::test]
async fn sft_fetch_sim_filters_paging_and_iccid_round_trip() {
    let sb = start().await;
    let sft = sb.sft();
    sft.login("rt-login").await.unwrap();
    assert_eq!(sb.calls("sft.login"), 1);

    let page1 = sft.fetch_sim(&SimQuery::available(5), "rt").await.unwrap();
    assert_eq!(page1.len(), 5);
    for s in &page1 {
        assert_eq!(
            (s.sim_status_id, s.sim_attach_status_id),
            (Some(12), Some(1)),
            "{s:?}"
        );
        assert!(s.iccid.as_str().starts_with("893244"), "{s:?}");
        let ac = s.activation_code.as_ref().expect("textQrCode");
        assert_eq!(ac.smdp_address(), "rsp-sft.sandbox.esim.test");
    }
    let ids: Vec<&str> = page1.iter().map(|s| s.end_point_id.as_str()).collect();
    assert_eq!(ids, ["7000001", "7000002", "7000003", "7000004", "7000005"]);

    let page2 = sft
        .fetch_sim(
            &SimQuery {
                page: Some(2),
                ..SimQuery::available(5)
            },
            "rt",
        )
        .await
        .unwrap();
    let ids2: Vec<&str> = page2.iter().map(|s| s.end_point_id.as_str()).collect();
    assert_eq!(ids2, ["7000006", "7000007", "7000008", "7000009", "7000010"]);

    let one = by_iccid(&sft, &page2[2]).await;
    assert_eq!(one, page2[2]);

    // Nothing is Active yet: an empty answer, not an error.
    let active = sft
        .fetch_sim(
            &SimQuery {
                sim_status_id: Some(1),
                ..Default::default()
            },
            "rt",
        )
        .await
        .unwrap();
    assert!(active.is_empty(), "{active:?}");
    // One login served every call.
    assert_eq!(sb.calls("sft.login"), 1);
    assert_eq!(sb.calls("sft.fetchSIM"), 4);
}

#[tokio::test]
async fn sft_lifecycle_and_addons_round_trip() {
    let sb = start().await;
    let sft = sb.sft();
    let sim = first_available(&sft).await;
    let pool = sb.sandbox.sft_available_sims();

    sft.change_life_cycle(&sim.end_point_id, LifeCycle::Active, "1", "rt-activate")
        .await
        .unwrap();
    assert_eq!(by_iccid(&sft, &sim).await.sim_status_id, Some(1), "Active");
    assert_eq!(sb.sandbox.sft_available_sims(), pool - 1);
    assert_ne!(first_available(&sft).await.end_point_id, sim.end_point_id);

    let started = sb.sandbox.now();
    let addon = sft
        .subscribe_addon(&sim.end_point_id, PLAN_3GB_15D, "rt-addon")
        .await
        .unwrap();
    assert!(!addon.unique_id.is_empty());
    assert_eq!(addon.end_point_id.as_deref(), Some(sim.end_point_id.as_str()));
    assert_eq!(addon.plan_id.as_deref(), Some(PLAN_3GB_15D));
    assert_eq!(addon.status.as_deref(), Some("Active"));
    let (from, to) = (addon.valid_from.unwrap(), addon.valid_to.unwrap());
    assert_eq!((to - from).num_days(), 15);
    assert!((from.with_timezone(&chrono::Utc) - started).num_seconds().abs() <= 5);
    assert_eq!(addon.counters.len(), 1);
    let c = &addon.counters[0];
    assert_eq!(c.total_bytes, Some(3 * 1024 * MB));
    assert_eq!(c.used_bytes, Some(0));
    assert_eq!(c.remaining_bytes, Some(3 * 1024 * MB));

    // Details of the endpoint: the add-on, and usage that grows with the sandbox clock.
    sb.sandbox.advance_clock(Duration::from_secs(86_400));
    let details = sft.addon_details(&sim.end_point_id, "rt").await.unwrap();
    assert_eq!(details.len(), 1);
    let d = &details[0];
    assert_eq!(d.unique_id, addon.unique_id);
    assert_eq!((d.valid_from, d.valid_to), (addon.valid_from, addon.valid_to));
    let c = &d.counters[0];
    let used = c.used_bytes.unwrap();
    assert!(used > 0 && used < 3 * 1024 * MB, "{c:?}");
    assert_eq!(c.remaining_bytes, Some(3 * 1024 * MB - used));

    // Suspend.
    sft.change_life_cycle(&sim.end_point_id, LifeCycle::Suspended, "1", "rt-suspend")
        .await
        .unwrap();
    assert_eq!(by_iccid(&sft, &sim).await.sim_status_id, Some(2), "Suspended");
    assert_eq!(sb.calls("sft.EndPointLifeCycleChange"), 2);
    assert_eq!(sb.calls("sft.SubscribeAddon"), 1);
}

#[tokio::test]
async fn sft_error_branches_are_typed() {
    let sb = start().await;
    let sft = sb.sft();
    let sim = first_available(&sft).await;
    // An add-on on a Pre-Active endpoint, suspending a Pre-Active one, an unknown plan.
    let e = sft
        .subscribe_addon(&sim.end_point_id, PLAN_3GB_15D, "rt")
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Upstream { code: 1, .. }), "{e}");
    assert!(!e.outcome_unknown());
    let e = sft
        .change_life_cycle(&sim.end_point_id, LifeCycle::Suspended, "1", "rt")
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Upstream { .. }), "{e}");
    sft.change_life_cycle(&sim.end_point_id, LifeCycle::Active, "1", "rt")
        .await
        .unwrap();
    // Activating again is harmless (already Active).
    sft.change_life_cycle(&sim.end_point_id, LifeCycle::Active, "1", "rt")
        .await
        .unwrap();
    let e = sft
        .subscribe_addon(&sim.end_point_id, "NO-SUCH-PLAN", "rt")
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Upstream { .. }), "{e}");
    let e = sft.addon_details("1", "rt").await.unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Upstream { .. }),
        "unknown endpoint: {e}"
    );
}

#[tokio::test]
async fn sft_sixteenth_addon_on_one_endpoint_is_refused() {
    let sb = start().await;
    let sft = sb.sft();
    let sim = first_available(&sft).await;
    sft.change_life_cycle(&sim.end_point_id, LifeCycle::Active, "1", "rt")
        .await
        .unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..15 {
        let a = sft
            .subscribe_addon(&sim.end_point_id, "PLAN-TRAVEL-1GB-7D", &format!("rt-{i}"))
            .await
            .unwrap_or_else(|e| panic!("add-on {}: {e}", i + 1));
        ids.insert(a.unique_id);
    }
    assert_eq!(ids.len(), 15, "each add-on has its own uniqueId");
    let e = sft
        .subscribe_addon(&sim.end_point_id, "PLAN-TRAVEL-1GB-7D", "rt-16")
        .await
        .unwrap_err();
    match &e.kind {
        ErrorKind::Upstream { message, .. } => assert!(message.contains("15"), "{e}"),
        other => panic!("expected an upstream refusal, got {other:?}"),
    }
    assert!(!e.outcome_unknown());
    assert_eq!(
        sft.addon_details(&sim.end_point_id, "rt").await.unwrap().len(),
        15
    );
    // Another endpoint is not affected.
    let other = first_available(&sft).await;
    sft.change_life_cycle(&other.end_point_id, LifeCycle::Active, "1", "rt")
        .await
        .unwrap();
    sft.subscribe_addon(&other.end_point_id, "PLAN-TRAVEL-1GB-7D", "rt")
        .await
        .unwrap();
}

#[tokio::test]
async fn sft_bad_credentials_are_a_typed_auth_error() {
    let sb = start().await;
    let bad = SftClient::new(SftConfig {
        password: "wrong".into(),
        ..sb.sft_config()
    })
    .unwrap();
    let e = bad.login("rt").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Auth(_)), "{e}");
    assert_eq!(sb.calls("sft.login"), 1, "not retried");
    // A call logs in first and fails the same way, without reaching fetchSIM.
    let e = bad.fetch_sim(&SimQuery::available(1), "rt").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Auth(_)), "{e}");
    assert_eq!(sb.calls("sft.fetchSIM"), 0);
}

#[tokio::test]
async fn sft_expired_token_logs_in_again_and_succeeds() {
    let sb = start().await;
    let sft = sb.sft();
    first_available(&sft).await;
    assert_eq!(sb.calls("sft.login"), 1);
    // Past the access token's lifetime on the sandbox clock: the JWT is refused (401).
    sb.sandbox
        .advance_clock(Duration::from_secs(sb.sandbox.config().sft_access_ttl_secs + 60));
    let sim = first_available(&sft).await;
    assert_eq!(sim.end_point_id, "7000001");
    assert_eq!(
        sb.calls("sft.login") + sb.calls("sft.refresh"),
        2,
        "one new token after the 401"
    );
    assert_eq!(sb.calls("sft.fetchSIM"), 3, "ok, refused (401), retried");
}

#[tokio::test]
async fn sft_token_near_expiry_is_refreshed() {
    // Access tokens of 30 s; the client refreshes 60 s before `exp`, so every call after the
    // first login refreshes.
    let sb = start_with(|c| c.sft_access_ttl_secs = 30).await;
    let sft = sb.sft();
    first_available(&sft).await;
    assert_eq!((sb.calls("sft.login"), sb.calls("sft.refresh")), (1, 0));
    first_available(&sft).await;
    assert_eq!((sb.calls("sft.login"), sb.calls("sft.refresh")), (1, 1));
    assert_eq!(sb.calls("sft.fetchSIM"), 2, "no call was refused");
}

//! Who gets through to a backend: authentication, scopes, rate limits, revocation, and what
//! the backend sees.

use std::time::{Duration, Instant};

use esim_gateway::keys;
use esim_gateway::store;
use esim_proto::gateway::v1 as pb;
use esim_proto::usage::v1 as usage;
use tonic::{Code, Request};
use tonic_types::StatusExt;

use crate::common::{KEY_REFRESH, authed, harnesses};

#[tokio::test]
async fn calls_without_a_valid_key_never_reach_the_backend() {
    for h in harnesses().await {
        let unknown = keys::generate().unwrap().key;
        let garbage = [
            None,
            Some("garbage"),
            Some(unknown.as_str()),
            Some("esk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ];
        for key in garbage {
            let status = h.get_usage(key).await.unwrap_err();
            assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "{}: {key:?}: {status:?}",
                h.label
            );
        }
        // Other schemes, and a key without a scheme.
        for header in [format!("Basic {}", h.admin_key), h.admin_key.clone()] {
            let mut request = Request::new(usage::GetUsageRequest::default());
            request
                .metadata_mut()
                .insert("authorization", header.parse().unwrap());
            let status = h.usage().get_usage(request).await.unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated);
        }
        // The gateway's own API too.
        let status = h
            .gateway()
            .list_api_keys(pb::ListApiKeysRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(
            h.backend.calls().is_empty(),
            "{}: {:?}",
            h.label,
            h.backend.calls()
        );
    }
}

#[tokio::test]
async fn a_key_without_the_scope_is_denied_before_the_backend() {
    for h in harnesses().await {
        let (order_key, _) = h.create_key("orders only", &[pb::Scope::Order], None).await;
        let (read_key, _) = h.create_key("reads only", &[pb::Scope::Read], None).await;

        let status = h.get_usage(Some(&order_key)).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{}: {status:?}", h.label);
        assert!(status.message().contains("READ"), "{status:?}");
        let status = h
            .usage()
            .start_usage_tracking(authed(usage::StartUsageTrackingRequest::default(), &read_key))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "admin only");
        let status = h
            .gateway()
            .list_api_keys(authed(pb::ListApiKeysRequest::default(), &read_key))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "key management is admin only"
        );
        assert!(
            h.backend.calls().is_empty(),
            "{}: {:?}",
            h.label,
            h.backend.calls()
        );

        // The right scope gets through, streams included.
        h.get_usage(Some(&read_key)).await.unwrap();
        let mut stream = h
            .usage()
            .watch_alerts(authed(usage::WatchAlertsRequest::default(), &read_key))
            .await
            .unwrap()
            .into_inner();
        assert!(stream.message().await.unwrap().is_none());
        let methods: Vec<_> = h.backend.calls().iter().map(|c| c.method).collect();
        assert_eq!(methods, ["GetUsage", "WatchAlerts"]);
    }
}

#[tokio::test]
async fn the_backend_never_sees_the_key() {
    for h in harnesses().await {
        let mut request = authed(
            usage::GetUsageRequest {
                name: "esims/abc/usage".into(),
            },
            &h.admin_key,
        );
        request
            .metadata_mut()
            .insert("x-test", "passed-on".parse().unwrap());
        h.usage().get_usage(request).await.unwrap();
        let calls = h.backend.calls();
        assert_eq!(calls.len(), 1, "{}", h.label);
        assert!(
            !calls[0].headers.iter().any(|name| name == "authorization"),
            "{}: {:?}",
            h.label,
            calls[0].headers
        );
        assert_eq!(calls[0].x_test.as_deref(), Some("passed-on"));
    }
}

#[tokio::test]
async fn a_revoked_key_is_refused_within_the_refresh_interval() {
    for h in harnesses().await {
        // Revoked through the API: at once on this replica.
        let (key, created) = h.create_key("revoked by api", &[pb::Scope::Read], None).await;
        h.get_usage(Some(&key)).await.unwrap();
        h.gateway()
            .revoke_api_key(authed(
                pb::RevokeApiKeyRequest {
                    name: created.name,
                    ..Default::default()
                },
                &h.admin_key,
            ))
            .await
            .unwrap();
        let status = h.get_usage(Some(&key)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{}", h.label);

        // Revoked in the database (another replica, or `esim-keys`): within the refresh interval.
        let (key, created) = h.create_key("revoked elsewhere", &[pb::Scope::Read], None).await;
        h.get_usage(Some(&key)).await.unwrap();
        let id = created.name.trim_start_matches("apiKeys/");
        store::revoke(&h.db, id, None).await.unwrap();
        let revoked_at = Instant::now();
        loop {
            match h.get_usage(Some(&key)).await {
                Err(status) => {
                    assert_eq!(status.code(), Code::Unauthenticated);
                    break;
                }
                Ok(_) => {
                    assert!(
                        revoked_at.elapsed() < KEY_REFRESH * 3,
                        "{}: still accepted after {:?}",
                        h.label,
                        revoked_at.elapsed()
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

#[tokio::test]
async fn a_key_over_its_rate_limit_is_told_when_to_retry() {
    for h in harnesses().await {
        let (key, created) = h.create_key("limited", &[pb::Scope::Read], Some((1, 2))).await;
        h.get_usage(Some(&key)).await.unwrap();
        h.get_usage(Some(&key)).await.unwrap();
        let status = h.get_usage(Some(&key)).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{}: {status:?}", h.label);
        let retry = status
            .get_error_details()
            .retry_info()
            .and_then(|info| info.retry_delay)
            .expect("RetryInfo with a delay");
        assert!(
            retry > Duration::ZERO && retry <= Duration::from_secs(1),
            "{retry:?}"
        );
        assert_eq!(
            h.backend.calls().len(),
            2,
            "{}: the refused call was not forwarded",
            h.label
        );

        // A new limit replaces the emptied bucket.
        h.gateway()
            .update_api_key(authed(
                pb::UpdateApiKeyRequest {
                    api_key: Some(pb::ApiKey {
                        name: created.name,
                        rate_limit: Some(pb::RateLimit {
                            requests_per_second: 100,
                            burst: 100,
                        }),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["rate_limit".into()],
                    }),
                    ..Default::default()
                },
                &h.admin_key,
            ))
            .await
            .unwrap();
        for _ in 0..10 {
            h.get_usage(Some(&key)).await.unwrap();
        }
    }
}

#[tokio::test]
async fn health_stays_open() {
    for h in harnesses().await {
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", h.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let health = tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: esim_proto::usage::v1::usage_service_server::SERVICE_NAME.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            health.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{}",
            h.label
        );
    }
}

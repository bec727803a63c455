//! The front door's guard, checked from outside: who may call what through the gateway (no key,
//! a bad key, a key without the scope, a revoked key, a key over its rate limit), what callers
//! see when a backend is down, that a backend port refuses callers without the internal
//! credential, the gateway's readiness, and the request id travelling back.

use std::future::Future;
use std::time::Duration;

use esim_e2e::{Bearer, TestSuite};
use esim_proto::{
    catalog::v1::{ListCountriesRequest, ListProductsRequest, catalog_service_client::CatalogServiceClient},
    gateway::v1::{
        ApiKey, ApiKeyState, CreateApiKeyRequest, RateLimit, RevokeApiKeyRequest, Scope,
        gateway_service_client::GatewayServiceClient,
    },
    ordering::v1::{
        CreateOrderRequest, ListOrdersRequest, Order, ordering_service_client::OrderingServiceClient,
    },
    provisioning::v1::{ListEsimsRequest, provisioning_service_client::ProvisioningServiceClient},
    usage::v1::{ListAlertsRequest, usage_service_client::UsageServiceClient},
};
use esim_runtime::db::testing;
use tonic::{Code, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

/// How long a change may take to show (key refresh and backend probe are 1 s in these tests).
const WITHIN: Duration = Duration::from_secs(5);

async fn start(overrides: &[(&str, String)]) -> TestSuite {
    let overrides = overrides
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.clone()))
        .collect();
    TestSuite::start(|| async { testing::fresh_sqlite() }, overrides)
        .await
        .expect("the suite starts")
}

/// `http://` and an address nothing listens on: port 1 (tcpmux), below the ephemeral range. A
/// port bound and released here instead could be handed straight to another service of a
/// suite running alongside, and the "down" backend would answer.
fn closed_port() -> String {
    "http://127.0.0.1:1".to_owned()
}

/// Calls `check` every 50 ms until it returns `Some`, for at most `limit`.
async fn poll<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn health(channel: Channel, service: &str) -> ServingStatus {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status()
}

/// Creates a key through the gateway with the bootstrap key; returns it and its plaintext.
async fn create_key(
    suite: &TestSuite,
    display_name: &str,
    scopes: &[Scope],
    rate_limit: Option<RateLimit>,
) -> (ApiKey, String) {
    let mut admin = GatewayServiceClient::with_interceptor(suite.channel("gateway").await, suite.bearer());
    let created = admin
        .create_api_key(CreateApiKeyRequest {
            request_id: format!("create-{display_name}"),
            api_key: Some(ApiKey {
                display_name: display_name.to_owned(),
                scopes: scopes.iter().map(|s| *s as i32).collect(),
                rate_limit,
                ..Default::default()
            }),
        })
        .await
        .expect("the bootstrap key creates keys")
        .into_inner();
    let key = created.api_key.expect("the created key");
    assert_eq!(key.state(), ApiKeyState::Active);
    assert!(created.key.starts_with(&key.key_prefix), "{key:?}");
    (key, created.key)
}

fn catalog_with(
    channel: Channel,
    key: &str,
) -> CatalogServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>> {
    CatalogServiceClient::with_interceptor(channel, Bearer::new(key))
}

#[tokio::test]
async fn a_call_without_an_api_key_is_unauthenticated() {
    let suite = start(&[]).await;
    let status = CatalogServiceClient::new(suite.channel("gateway").await)
        .list_countries(ListCountriesRequest::default())
        .await
        .expect_err("no key, no catalogue");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("missing API key"), "{status:?}");
    suite.stop().await;
}

#[tokio::test]
async fn a_garbage_api_key_is_unauthenticated() {
    let suite = start(&[]).await;
    let gateway = suite.channel("gateway").await;
    for garbage in ["not-a-key", "esk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        let status = catalog_with(gateway.clone(), garbage)
            .list_countries(ListCountriesRequest::default())
            .await
            .expect_err("a garbage key opens nothing");
        assert_eq!(status.code(), Code::Unauthenticated, "{garbage}: {status:?}");
        assert!(
            !status.message().contains(garbage),
            "a key is never echoed: {status:?}"
        );
    }
    suite.stop().await;
}

#[tokio::test]
async fn a_read_only_key_lists_products_but_may_neither_order_nor_create_keys() {
    let suite = start(&[]).await;
    let gateway = suite.channel("gateway").await;
    let (_, key) = create_key(&suite, "read-only", &[Scope::Read], None).await;

    catalog_with(gateway.clone(), &key)
        .list_products(ListProductsRequest::default())
        .await
        .expect("READ lists products");

    let status = OrderingServiceClient::with_interceptor(gateway.clone(), Bearer::new(&key))
        .create_order(CreateOrderRequest {
            request_id: "read-only-order".into(),
            order: Some(Order {
                product: "products/any".into(),
                customer_reference: "traveller".into(),
                ..Default::default()
            }),
            expected_retail_price: None,
        })
        .await
        .expect_err("ordering needs the ORDER scope");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("ORDER"), "{status:?}");

    let status = GatewayServiceClient::with_interceptor(gateway, Bearer::new(&key))
        .create_api_key(CreateApiKeyRequest {
            request_id: "read-only-escalates".into(),
            api_key: Some(ApiKey {
                display_name: "escalated".into(),
                scopes: vec![Scope::Admin as i32],
                ..Default::default()
            }),
        })
        .await
        .expect_err("creating keys needs the ADMIN scope");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("ADMIN"), "{status:?}");
    suite.stop().await;
}

#[tokio::test]
async fn a_revoked_key_is_unauthenticated_within_seconds() {
    let suite = start(&[("GATEWAY_KEY_REFRESH_SECS", "1".into())]).await;
    let gateway = suite.channel("gateway").await;
    let (created, key) = create_key(&suite, "to-revoke", &[Scope::Read], None).await;
    let mut catalog = catalog_with(gateway.clone(), &key);
    catalog
        .list_countries(ListCountriesRequest::default())
        .await
        .expect("the new key works");

    let revoked = GatewayServiceClient::with_interceptor(gateway, suite.bearer())
        .revoke_api_key(RevokeApiKeyRequest {
            request_id: "revoke-1".into(),
            name: created.name.clone(),
        })
        .await
        .expect("revoke")
        .into_inner();
    assert_eq!(revoked.state(), ApiKeyState::Revoked);
    assert!(revoked.revoke_time.is_some());

    let refused = poll(WITHIN, || {
        let mut catalog = catalog.clone();
        async move {
            catalog
                .list_countries(ListCountriesRequest::default())
                .await
                .err()
        }
    })
    .await
    .expect("the revoked key is refused within 5 s");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    suite.stop().await;
}

#[tokio::test]
async fn a_key_over_its_rate_limit_is_told_when_to_retry() {
    let suite = start(&[]).await;
    let limit = RateLimit {
        requests_per_second: 1,
        burst: 2,
    };
    let (created, key) = create_key(&suite, "slow", &[Scope::Read], Some(limit)).await;
    assert_eq!(created.rate_limit, Some(limit));
    let mut catalog = catalog_with(suite.channel("gateway").await, &key);

    let started = tokio::time::Instant::now();
    let mut outcomes = Vec::new();
    for _ in 0..10 {
        outcomes.push(catalog.list_countries(ListCountriesRequest::default()).await);
    }
    // The burst of 2, plus one token per second that passed while the calls ran.
    let most = 3 + started.elapsed().as_secs() as usize;
    let allowed = outcomes.iter().filter(|o| o.is_ok()).count();
    assert!(
        (2..=most).contains(&allowed),
        "{allowed} of 10 calls let through, expected 2..={most}"
    );
    let exhausted = outcomes
        .into_iter()
        .filter_map(Result::err)
        .inspect(|status| assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}"))
        .last()
        .expect("some calls are refused");
    let retry = exhausted
        .get_error_details()
        .retry_info()
        .cloned()
        .expect("RetryInfo in the details");
    let delay = retry.retry_delay.expect("a retry delay");
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(1),
        "one token comes back within a second at 1/s: {delay:?}"
    );

    // Waiting as told is enough.
    tokio::time::sleep(delay).await;
    catalog
        .list_countries(ListCountriesRequest::default())
        .await
        .expect("a call after the retry delay is let through");
    suite.stop().await;
}

#[tokio::test]
async fn a_backend_down_is_unavailable_while_the_others_still_answer() {
    let suite = start(&[
        ("GATEWAY_CATALOG_URL", closed_port()),
        ("GATEWAY_BACKEND_PROBE_SECS", "1".into()),
    ])
    .await;
    let gateway = suite.channel("gateway").await;

    let status = CatalogServiceClient::with_interceptor(gateway.clone(), suite.bearer())
        .list_countries(ListCountriesRequest::default())
        .await
        .expect_err("the catalog is unreachable");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    OrderingServiceClient::with_interceptor(gateway.clone(), suite.bearer())
        .list_orders(ListOrdersRequest::default())
        .await
        .expect("ordering still answers");
    ProvisioningServiceClient::with_interceptor(gateway.clone(), suite.bearer())
        .list_esims(ListEsimsRequest::default())
        .await
        .expect("provisioning still answers");
    UsageServiceClient::with_interceptor(gateway.clone(), suite.bearer())
        .list_alerts(ListAlertsRequest::default())
        .await
        .expect("usage still answers");
    // One backend down does not take the gateway out of rotation: the others answer.
    let ready = poll(WITHIN, || {
        let gateway = gateway.clone();
        async move { (health(gateway, "").await == ServingStatus::Serving).then_some(()) }
    })
    .await;
    assert!(
        ready.is_some(),
        "readiness did not report SERVING with three backends up"
    );
    suite.stop().await;
}

#[tokio::test]
async fn a_backend_port_refuses_calls_without_the_internal_credential_but_answers_health() {
    let suite = start(&[]).await;
    let direct = suite.channel("catalog").await;

    let status = CatalogServiceClient::new(direct.clone())
        .list_countries(ListCountriesRequest::default())
        .await
        .expect_err("a direct call without the credential is refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // Nor does an API key stand in for the internal credential.
    let status = catalog_with(direct.clone(), &suite.api_key)
        .list_countries(ListCountriesRequest::default())
        .await
        .expect_err("an API key is no internal credential");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    assert_eq!(health(direct, "").await, ServingStatus::Serving);
    CatalogServiceClient::new(suite.internal_channel("catalog"))
        .list_countries(ListCountriesRequest::default())
        .await
        .expect("the same call with the internal credential");
    suite.stop().await;
}

#[tokio::test]
async fn the_gateway_is_not_ready_without_backends_but_stays_live() {
    let suite = start(&[
        ("GATEWAY_CATALOG_URL", closed_port()),
        ("GATEWAY_ORDERING_URL", closed_port()),
        ("GATEWAY_PROVISIONING_URL", closed_port()),
        ("GATEWAY_USAGE_URL", closed_port()),
        ("GATEWAY_BACKEND_PROBE_SECS", "1".into()),
    ])
    .await;
    let gateway = suite.channel("gateway").await;

    let not_ready = poll(WITHIN, || {
        let gateway = gateway.clone();
        async move { (health(gateway, "").await == ServingStatus::NotServing).then_some(()) }
    })
    .await;
    assert!(not_ready.is_some(), "readiness did not report NOT_SERVING");
    // Over three probe rounds readiness stays down and liveness stays up.
    for _ in 0..3 {
        assert_eq!(health(gateway.clone(), "").await, ServingStatus::NotServing);
        assert_eq!(health(gateway.clone(), "liveness").await, ServingStatus::Serving);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    suite.stop().await;
}

#[tokio::test]
async fn the_gateway_is_ready_once_its_backends_answer() {
    let suite = start(&[("GATEWAY_BACKEND_PROBE_SECS", "1".into())]).await;
    let gateway = suite.channel("gateway").await;
    let ready = poll(WITHIN, || {
        let gateway = gateway.clone();
        async move { (health(gateway, "").await == ServingStatus::Serving).then_some(()) }
    })
    .await;
    assert!(ready.is_some(), "readiness did not report SERVING");
    assert_eq!(health(gateway, "liveness").await, ServingStatus::Serving);
    suite.stop().await;
}

#[tokio::test]
async fn the_request_id_sent_comes_back_through_the_gateway() {
    let suite = start(&[]).await;
    let mut catalog = CatalogServiceClient::with_interceptor(suite.channel("gateway").await, suite.bearer());
    let mut request = tonic::Request::new(ListCountriesRequest::default());
    request
        .metadata_mut()
        .insert("x-request-id", "e2e-request-7f3a".parse().expect("ascii"));
    let response = catalog.list_countries(request).await.expect("list countries");
    assert_eq!(
        response
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("e2e-request-7f3a"),
        "{:?}",
        response.metadata()
    );

    // Without one, the gateway makes one up and returns it too.
    let response = catalog
        .list_countries(ListCountriesRequest::default())
        .await
        .expect("list countries");
    let generated = response
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(!generated.is_empty(), "{:?}", response.metadata());
    assert_ne!(generated, "e2e-request-7f3a");
    suite.stop().await;
}

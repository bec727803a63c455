//! The suite boots, every service answers health, the gateway serves reflection for all five
//! APIs and forwards calls to the backend that serves them.

use std::collections::BTreeSet;

use esim_e2e::TestSuite;
use esim_runtime::db::testing;
use futures::StreamExt;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1alpha::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

const SERVICES: [&str; 5] = ["catalog", "ordering", "provisioning", "usage", "gateway"];

async fn reflected_services(channel: tonic::transport::Channel) -> BTreeSet<String> {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    match stream
        .next()
        .await
        .expect("one response")
        .expect("ok")
        .message_response
    {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection response {other:?}"),
    }
}

async fn boots_and_serves(suite: TestSuite) {
    for name in SERVICES {
        let status = HealthClient::new(suite.channel(name).await)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap_or_else(|err| panic!("{name} health: {err}"))
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{name}");
    }

    let listed = reflected_services(suite.channel("gateway").await).await;
    for api in [
        "esim.catalog.v1.CatalogService",
        "esim.ordering.v1.OrderingService",
        "esim.provisioning.v1.ProvisioningService",
        "esim.usage.v1.UsageService",
        "esim.gateway.v1.GatewayService",
    ] {
        assert!(listed.contains(api), "{api} missing from {listed:?}");
    }
    for (name, api) in [
        ("catalog", "esim.catalog.v1.CatalogService"),
        ("ordering", "esim.ordering.v1.OrderingService"),
        ("provisioning", "esim.provisioning.v1.ProvisioningService"),
        ("usage", "esim.usage.v1.UsageService"),
    ] {
        let listed = reflected_services(suite.channel(name).await).await;
        assert!(listed.contains(api), "{name} does not list {api}: {listed:?}");
    }

    suite.stop().await;
}

#[tokio::test]
async fn suite_boots_on_sqlite() {
    let suite = TestSuite::start(|| async { testing::fresh_sqlite() }, Vec::new())
        .await
        .unwrap();
    boots_and_serves(suite).await;
}

#[tokio::test]
async fn suite_boots_on_postgres() {
    let Some(admin_url) = testing::postgres_url() else {
        eprintln!("DATABASE_URL is not a PostgreSQL URL: covered by suite_boots_on_sqlite only");
        return;
    };
    let suite = TestSuite::start(|| testing::fresh_postgres(&admin_url), Vec::new())
        .await
        .unwrap();
    boots_and_serves(suite).await;
}

/// A raw unary call through `channel` to `path` with `key`, with an empty request message.
async fn call(channel: tonic::transport::Channel, key: &str, path: &'static str) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let mut request = tonic::Request::new(());
    request
        .metadata_mut()
        .insert("x-request-id", "e2e-forward".parse().expect("ascii"));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().expect("ascii"));
    grpc.unary::<(), (), _>(
        request,
        http::uri::PathAndQuery::from_static(path),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .expect_err("no domain method is registered yet")
}

#[tokio::test]
async fn gateway_forwards_by_service_name() {
    // The catalog backend points nowhere: the gateway must report it UNAVAILABLE, while the
    // ordering backend is reached and answers for itself.
    // Port 1 is below the ephemeral range: no service of a suite running alongside gets it.
    let overrides = vec![("GATEWAY_CATALOG_URL".to_owned(), "http://127.0.0.1:1".to_owned())];
    let suite = TestSuite::start(|| async { testing::fresh_sqlite() }, overrides)
        .await
        .unwrap();
    let gateway = suite.channel("gateway").await;

    let status = call(
        gateway.clone(),
        &suite.api_key,
        "/esim.catalog.v1.CatalogService/GetProduct",
    )
    .await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("esim.catalog.v1.CatalogService"),
        "{status:?}"
    );

    // The other backends are still reached: ordering itself refuses the empty request, naming
    // the field, and the request id came through.
    let status = call(
        gateway.clone(),
        &suite.api_key,
        "/esim.ordering.v1.OrderingService/GetOrder",
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("name"), "{status:?}");
    assert_eq!(
        status
            .metadata()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap_or_default()),
        Some("e2e-forward")
    );
    // A service nobody serves is refused by the gateway itself.
    let status = call(gateway, &suite.api_key, "/esim.nothing.v1.Nothing/Get").await;
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    suite.stop().await;
}

/// A service that fails while starting fails the suite's start with its own error, instead of
/// going unnoticed until the suite stops (or for good, when no test calls it).
#[tokio::test]
async fn a_service_failing_at_start_fails_the_start_with_its_error() {
    let overrides = vec![(
        "CATALOG_CONFIG_FILE".to_owned(),
        "/nonexistent/catalog.json".to_owned(),
    )];
    let err = TestSuite::start(|| async { testing::fresh_sqlite() }, overrides)
        .await
        .expect_err("the catalog cannot read its config file");
    let err = err.to_string();
    assert!(err.contains("stopped while starting"), "{err}");
    assert!(
        err.contains("/nonexistent/catalog.json"),
        "the catalog's own error: {err}"
    );
}

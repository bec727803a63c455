//! A server on a free port, checked with real gRPC clients: health, reflection, graceful
//! shutdown with a call in flight, the internal credential, the call context and readiness.

use std::{convert::Infallible, task::Poll, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use http_body::Frame;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{body::Body, server::NamedService, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1alpha::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

use super::*;

/// A gRPC service that answers every call with an empty message after a delay, standing in for
/// a slow domain call, and keeps the headers of every call it ran.
#[derive(Clone, Default)]
struct Slow {
    delay: Duration,
    seen: std::sync::Arc<std::sync::Mutex<Vec<http::HeaderMap>>>,
}

impl Slow {
    fn new(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    fn calls(&self) -> Vec<http::HeaderMap> {
        self.seen.lock().unwrap().clone()
    }
}

impl NamedService for Slow {
    const NAME: &'static str = "test.Slow";
}

impl tower::Service<http::Request<Body>> for Slow {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        self.seen.lock().unwrap().push(request.headers().clone());
        let delay = self.delay;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            // One length-prefixed empty message, then the trailers.
            let frames = futures::stream::iter([
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
                Ok(Frame::trailers(trailers)),
            ]);
            let body = Body::new(http_body_util::StreamBody::new(frames));
            Ok(http::Response::builder()
                .header("content-type", "application/grpc")
                .body(body)
                .expect("static response"))
        })
    }
}

async fn call_slow<C>(channel: C) -> Result<(), tonic::Status>
where
    C: tonic::client::GrpcService<Body>,
    C::Error: Into<tonic::codegen::StdError>,
    C::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <C::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.into().to_string()))?;
    let path = http::uri::PathAndQuery::from_static("/test.Slow/Call");
    grpc.unary::<(), (), _>(tonic::Request::new(()), path, tonic_prost::ProstCodec::default())
        .await
        .map(|_| ())
}

struct Running {
    addr: std::net::SocketAddr,
    channel: Channel,
    token: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), ServeError>>,
}

async fn start(slow: Duration, grace: Duration) -> Running {
    let server = GrpcServer::new()
        .add_service(Slow::new(slow))
        .describe("esim.catalog.v1.CatalogService");
    start_server(server, grace).await
}

async fn start_server(server: GrpcServer, grace: Duration) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = CancellationToken::new();
    let stop = token.clone();
    let policy = ShutdownPolicy {
        drain_delay: Duration::ZERO,
        grace,
    };
    let server = tokio::spawn(async move {
        server
            .serve(listener, async move { stop.cancelled().await }, policy)
            .await
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Running {
        addr,
        channel,
        token,
        server,
    }
}

async fn health(channel: &Channel, service: &str) -> ServingStatus {
    let response = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap();
    response.into_inner().status()
}

#[tokio::test]
async fn serves_health_and_reflection() {
    let running = start(Duration::ZERO, Duration::from_secs(5)).await;
    assert_eq!(health(&running.channel, "").await, ServingStatus::Serving);
    assert_eq!(
        health(&running.channel, "test.Slow").await,
        ServingStatus::Serving
    );

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(running.channel.clone())
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "esim.catalog.v1.CatalogService",
        "grpc.health.v1.Health",
        "test.Slow",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }

    running.token.cancel();
    running.server.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_reports_not_serving_and_finishes_the_call_in_flight() {
    let running = start(Duration::from_millis(600), Duration::from_secs(5)).await;
    let mut watch = HealthClient::new(running.channel.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.next().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );

    let in_flight = tokio::spawn(call_slow(running.channel.clone()));
    tokio::time::sleep(Duration::from_millis(150)).await;
    running.token.cancel();

    assert_eq!(
        watch.next().await.unwrap().unwrap().status(),
        ServingStatus::NotServing
    );
    in_flight.await.unwrap().expect("the call in flight completes");
    drop(watch);
    tokio::time::timeout(Duration::from_secs(5), running.server)
        .await
        .expect("server stops after draining")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn grace_period_bounds_the_drain() {
    let running = start(Duration::from_secs(30), Duration::from_millis(300)).await;
    let stuck = tokio::spawn(call_slow(running.channel.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    running.token.cancel();
    tokio::time::timeout(Duration::from_secs(5), running.server)
        .await
        .expect("shutdown is bounded by the grace period")
        .unwrap()
        .unwrap();
    // The stuck call ends with the process; here the test just stops waiting for it.
    stuck.abort();
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let running = start(Duration::ZERO, Duration::from_secs(5)).await;
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request
        .metadata_mut()
        .insert("x-request-id", "abc-123".parse().unwrap());
    let response = HealthClient::new(running.channel.clone())
        .check(request)
        .await
        .unwrap();
    assert_eq!(response.metadata().get("x-request-id").unwrap(), "abc-123");

    let response = HealthClient::new(running.channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    let generated = response.metadata().get("x-request-id").unwrap().to_str().unwrap();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    running.token.cancel();
}

fn peer(running: &Running, credential: Option<InternalCredential>) -> crate::peer::PeerChannel {
    crate::peer::PeerChannel::connect_lazy("TEST_URL", &format!("http://{}", running.addr), credential, 2)
        .unwrap()
}

#[tokio::test]
async fn backends_refuse_callers_without_the_internal_credential() {
    let credential = InternalCredential::generate();
    let slow = Slow::new(Duration::ZERO);
    let server = GrpcServer::new()
        .add_service(slow.clone())
        .require_internal(Some(credential.clone()));
    let running = start_server(server, Duration::from_secs(5)).await;

    let refused = call_slow(running.channel.clone()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let refused = call_slow(peer(&running, Some(InternalCredential::generate())))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(
        slow.calls().is_empty(),
        "a refused call never reaches the service"
    );
    // Probes and grpcurl still work.
    assert_eq!(health(&running.channel, "").await, ServingStatus::Serving);

    call_slow(peer(&running, Some(credential))).await.unwrap();
    let calls = slow.calls();
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0].get(crate::internal::HEADER).is_none(),
        "the credential is removed before the handler runs"
    );
    running.token.cancel();
}

#[tokio::test]
async fn peer_calls_carry_the_callers_request_id_trace_and_deadline() {
    let slow = Slow::new(Duration::ZERO);
    let running = start_server(
        GrpcServer::new().add_service(slow.clone()),
        Duration::from_secs(5),
    )
    .await;
    let trace =
        esim_context::TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let context = esim_context::CallContext {
        request_id: esim_context::RequestId::parse("order-42").unwrap(),
        trace,
        deadline: Some(std::time::Instant::now() + Duration::from_secs(5)),
    };
    esim_context::scope(context, call_slow(peer(&running, None)))
        .await
        .unwrap();
    let headers = &slow.calls()[0];
    assert_eq!(headers.get("x-request-id").unwrap(), "order-42");
    let sent =
        esim_context::TraceParent::parse(headers.get("traceparent").unwrap().to_str().unwrap()).unwrap();
    assert_eq!(sent.trace_id(), trace.trace_id(), "same trace");
    assert_ne!(sent, trace, "a new span");
    let timeout =
        crate::call_context::parse_grpc_timeout(headers.get("grpc-timeout").unwrap().to_str().unwrap())
            .unwrap();
    assert!(
        timeout <= Duration::from_secs(5) && timeout > Duration::from_secs(4),
        "{timeout:?}"
    );
    running.token.cancel();
}

#[tokio::test]
async fn a_peer_call_is_not_sent_once_the_caller_gave_up() {
    let slow = Slow::new(Duration::ZERO);
    let running = start_server(
        GrpcServer::new().add_service(slow.clone()),
        Duration::from_secs(5),
    )
    .await;

    let context = esim_context::CallContext {
        deadline: Some(std::time::Instant::now()),
        ..esim_context::CallContext::background()
    };
    let status = esim_context::scope(context, call_slow(peer(&running, None)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(slow.calls().is_empty());
    running.token.cancel();
}

#[tokio::test]
async fn readiness_follows_the_gate_and_liveness_does_not() {
    let (gate, gate_rx) = tokio::sync::watch::channel(false);
    let server = GrpcServer::new()
        .add_service(Slow::new(Duration::ZERO))
        .readiness_gate(gate_rx);
    let running = start_server(server, Duration::from_secs(5)).await;
    let channel = &running.channel;
    assert_eq!(health(channel, "").await, ServingStatus::NotServing);
    assert_eq!(health(channel, "test.Slow").await, ServingStatus::NotServing);
    assert_eq!(health(channel, LIVENESS).await, ServingStatus::Serving);

    gate.send(true).unwrap();
    let mut ready = false;
    for _ in 0..50 {
        if health(channel, "").await == ServingStatus::Serving {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ready, "SERVING once the gate opens");
    gate.send(false).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(health(channel, "").await, ServingStatus::NotServing);
    assert_eq!(health(channel, LIVENESS).await, ServingStatus::Serving);
    running.token.cancel();
}

#[tokio::test]
async fn reflection_can_be_turned_off() {
    let server = GrpcServer::new()
        .add_service(Slow::new(Duration::ZERO))
        .reflection(false);
    let running = start_server(server, Duration::from_secs(5)).await;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let refused = ServerReflectionClient::new(running.channel.clone())
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect_err("no reflection service");
    assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused:?}");
    assert_eq!(
        health(&running.channel, "").await,
        ServingStatus::Serving,
        "health stays"
    );
    running.token.cancel();
}

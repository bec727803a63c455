//! The cost of one HTTP/2 hop, apart from anything the suite's services do (`esim-bench hop`):
//! a minimal gRPC echo called directly, through a bare tonic frame pass-through (a tonic server
//! whose one service hands each request to a tonic `Channel`, nothing else), and through the
//! gateway's own forwarding stack (the runtime's `GrpcServer` with its call-context layer,
//! `Forward` and `PeerChannel`). The pass-through is the floor any gateway built on tonic and
//! hyper starts from; the difference to the gateway's stack is what the gateway's own code
//! costs.

use std::{
    convert::Infallible,
    net::SocketAddr,
    task::{Context, Poll},
};

use esim_gateway::forward::{Backend, Forward};
use esim_runtime::{GrpcServer, ShutdownPolicy, peer::PeerChannel};
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::net::TcpListener;
use tonic::{
    Status,
    body::Body,
    client::Grpc,
    codegen::Bytes,
    server::NamedService,
    transport::{Channel, Server, server::TcpIncoming},
};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::Service;

/// The echo's gRPC service name; its one method is `Check`, with the health messages.
const ECHO: &str = "bench.Echo";
const ECHO_METHOD: &str = "/bench.Echo/Check";

/// The echoed service as a forwarding target of the gateway's stack.
#[derive(Debug)]
pub struct EchoBackend;

impl Backend for EchoBackend {
    const NAME: &'static str = ECHO;
}

/// Answers every call with a `HealthCheckResponse { status: SERVING }` once it has read the
/// request: the least a gRPC server can do.
#[derive(Debug, Clone)]
struct Echo;

impl NamedService for Echo {
    const NAME: &'static str = ECHO;
}

impl Service<Request<Body>> for Echo {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        Box::pin(async move {
            // Reading the request to its end, as a real handler does, keeps the stream clean.
            if let Err(status) = request.into_body().collect().await {
                return Ok(status.into_http());
            }
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            // One length-prefixed message: field 1 (status) = 1 (SERVING).
            let frames = futures::stream::iter([
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 2, 8, 1]))),
                Ok(Frame::trailers(trailers)),
            ]);
            let mut response = Response::new(Body::new(http_body_util::StreamBody::new(frames)));
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static("application/grpc"));
            Ok(response)
        })
    }
}

/// Hands every call to a tonic `Channel` unchanged.
#[derive(Debug, Clone)]
struct PassThrough(Channel);

impl NamedService for PassThrough {
    const NAME: &'static str = ECHO;
}

impl Service<Request<Body>> for PassThrough {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let mut channel = self.0.clone();
        Box::pin(async move {
            let sent = async {
                futures::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
                channel.call(request).await
            };
            Ok(sent
                .await
                .unwrap_or_else(|err| Status::unavailable(err.to_string()).into_http()))
        })
    }
}

/// Where the three paths to the echo listen.
#[derive(Debug, Clone, Copy)]
pub struct Hops {
    /// The echo itself.
    pub echo: SocketAddr,
    /// The echo behind a bare tonic pass-through.
    pub pass_through: SocketAddr,
    /// The echo behind the gateway's forwarding stack.
    pub gateway_stack: SocketAddr,
}

async fn listener() -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Starts the echo and both forwarders on the current runtime; they run until it stops.
pub async fn start() -> std::io::Result<Hops> {
    let (echo_listener, echo) = listener().await?;
    tokio::spawn(
        Server::builder()
            .add_service(Echo)
            .serve_with_incoming(incoming(echo_listener)),
    );
    let url = format!("http://{echo}");

    let channel = Channel::from_shared(url.clone())
        .map_err(std::io::Error::other)?
        .tcp_nodelay(true)
        .connect_lazy();
    let (pass_listener, pass_through) = listener().await?;
    tokio::spawn(
        Server::builder()
            .add_service(PassThrough(channel))
            .serve_with_incoming(incoming(pass_listener)),
    );

    let peer = PeerChannel::connect_lazy("ECHO_URL", &url, None, 1).map_err(std::io::Error::other)?;
    let (stack_listener, gateway_stack) = listener().await?;
    let server = GrpcServer::new().add_service(Forward::<EchoBackend>::new(peer));
    tokio::spawn(server.serve(stack_listener, std::future::pending(), ShutdownPolicy::default()));
    Ok(Hops {
        echo,
        pass_through,
        gateway_stack,
    })
}

/// One echo call over `channel`.
pub async fn call(channel: Channel) -> Result<HealthCheckResponse, Status> {
    let mut grpc = Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|err| Status::unavailable(err.to_string()))?;
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
    grpc.unary(
        tonic::Request::new(HealthCheckRequest::default()),
        http::uri::PathAndQuery::from_static(ECHO_METHOD),
        codec,
    )
    .await
    .map(tonic::Response::into_inner)
}

//! The cost of one HTTP/2 hop, apart from anything the suite's services do (`esim-bench hop`):
//! a minimal gRPC echo called directly, through a bare tonic frame pass-through (a tonic server
//! whose one service hands each request to a tonic `Channel`, nothing else), through a bare
//! hyper pass-through (hyper's HTTP/2 server and client connections, no tonic at all), and
//! through the gateway's own forwarding stack (the runtime's `GrpcServer` with its call-context
//! layer, `Forward` and `PeerChannel`). The pass-throughs are the floor any gateway built on
//! hyper's HTTP/2 starts from; the difference to the gateway's stack is what the gateway's own
//! code costs.

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
/// request: the least a gRPC server can do. The response may carry `padding` bytes more in a
/// field the client does not know (and skips), to weigh a hop by the size of what it relays.
#[derive(Debug, Clone)]
struct Echo {
    response: Bytes,
}

impl Echo {
    fn new(padding: usize) -> Self {
        // Field 1 (status) = 1 (SERVING), then field 15 as bytes when padded.
        let mut message = vec![8, 1];
        if padding > 0 {
            message.push(15 << 3 | 2);
            prost::encoding::encode_varint(padding as u64, &mut message);
            message.resize(message.len() + padding, b'x');
        }
        let length = u32::try_from(message.len()).expect("a small message");
        let mut framed = vec![0];
        framed.extend(length.to_be_bytes());
        framed.extend(message);
        Self {
            response: framed.into(),
        }
    }
}

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
        let response = self.response.clone();
        Box::pin(async move {
            // Reading the request to its end, as a real handler does, keeps the stream clean.
            if let Err(status) = request.into_body().collect().await {
                return Ok(status.into_http());
            }
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let frames = futures::stream::iter([
                Ok::<_, Infallible>(Frame::data(response)),
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

/// Hands every call to one hyper HTTP/2 client connection unchanged: no tonic on either side,
/// no boxing, the request body relayed as hyper received it. Measured to show whether a
/// lower-level stack than tonic would make the hop cheaper.
async fn serve_hyper_pass_through(listener: TcpListener, upstream: SocketAddr) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let stream = tokio::net::TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    let authority: http::uri::Authority = upstream.to_string().parse().map_err(std::io::Error::other)?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let sender = sender.clone();
        let authority = authority.clone();
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let mut sender = sender.clone();
            let authority = authority.clone();
            async move {
                let (mut parts, body) = request.into_parts();
                let mut uri = parts.uri.into_parts();
                uri.scheme = Some(http::uri::Scheme::HTTP);
                uri.authority = Some(authority);
                parts.uri = http::Uri::from_parts(uri).map_err(std::io::Error::other)?;
                sender
                    .send_request(Request::from_parts(parts, body))
                    .await
                    .map_err(std::io::Error::other)
            }
        });
        tokio::spawn(
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service),
        );
    }
}

/// Where the paths to the echo listen.
#[derive(Debug, Clone, Copy)]
pub struct Hops {
    /// The echo itself.
    pub echo: SocketAddr,
    /// The echo behind a bare tonic pass-through.
    pub pass_through: SocketAddr,
    /// The echo behind a bare hyper pass-through.
    pub hyper_pass_through: SocketAddr,
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

/// Starts the echo (answering `padding` extra bytes) and the forwarders on the current
/// runtime; they run until it stops.
pub async fn start(padding: usize) -> std::io::Result<Hops> {
    let (echo_listener, echo) = listener().await?;
    tokio::spawn(
        Server::builder()
            .add_service(Echo::new(padding))
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

    let (hyper_listener, hyper_pass_through) = listener().await?;
    tokio::spawn(serve_hyper_pass_through(hyper_listener, echo));

    let peer = PeerChannel::connect_lazy("ECHO_URL", &url, None, 1).map_err(std::io::Error::other)?;
    let (stack_listener, gateway_stack) = listener().await?;
    let server = GrpcServer::new().add_service(Forward::<EchoBackend>::new(peer));
    tokio::spawn(server.serve(stack_listener, std::future::pending(), ShutdownPolicy::default()));
    Ok(Hops {
        echo,
        pass_through,
        hyper_pass_through,
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

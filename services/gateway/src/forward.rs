//! Forwarding one backend gRPC service frame for frame: the HTTP/2 request (headers, body
//! stream, trailers) goes to the backend's channel unchanged but for what the [`PeerChannel`]
//! stamps on it (the internal credential, the request id, a child `traceparent`, the remaining
//! deadline), and its response comes back the same way. Nothing is decoded, so any method,
//! unary or streaming, works, including methods added to a backend later.

use std::{
    convert::Infallible,
    marker::PhantomData,
    pin::Pin,
    task::{Context, Poll, ready},
};

use esim_runtime::peer::PeerChannel;
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue};
use http_body::Frame;
use tonic::{Status, body::Body, codegen::Bytes, server::NamedService};
use tower::Service;

/// A backend gRPC service, identified by its fully-qualified name.
pub trait Backend: Send + Sync + 'static {
    /// The gRPC service name, e.g. `esim.catalog.v1.CatalogService`.
    const NAME: &'static str;
}

macro_rules! backends {
    ($($(#[$doc:meta])* $marker:ident => $name:path;)*) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $marker;
        impl Backend for $marker {
            const NAME: &'static str = $name;
        }
    )*};
}

backends! {
    /// The catalog API.
    Catalog => esim_proto::catalog::v1::catalog_service_server::SERVICE_NAME;
    /// The ordering API.
    Ordering => esim_proto::ordering::v1::ordering_service_server::SERVICE_NAME;
    /// The provisioning API.
    Provisioning => esim_proto::provisioning::v1::provisioning_service_server::SERVICE_NAME;
    /// The usage API.
    Usage => esim_proto::usage::v1::usage_service_server::SERVICE_NAME;
}

/// Forwards every call of backend `B` over `channel`.
#[derive(Debug)]
pub struct Forward<B> {
    channel: PeerChannel,
    backend: PhantomData<fn() -> B>,
}

impl<B> Clone for Forward<B> {
    fn clone(&self) -> Self {
        Self {
            channel: self.channel.clone(),
            backend: PhantomData,
        }
    }
}

impl<B: Backend> Forward<B> {
    /// Forwards to the backend behind `channel`.
    pub fn new(channel: PeerChannel) -> Self {
        Self {
            channel,
            backend: PhantomData,
        }
    }
}

impl<B: Backend> NamedService for Forward<B> {
    const NAME: &'static str = B::NAME;
}

impl<B: Backend> Service<http::Request<Body>> for Forward<B> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // PeerChannel awaits a connection per call, so a backend that is down turns into a
        // status for that call instead of stalling the gateway's connection.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let call = self.channel.call(request);
        Box::pin(async move {
            Ok(call
                .await
                .map(|response| response.map(|body| Body::new(UnavailableOnError::new(body, B::NAME))))
                .unwrap_or_else(|err| {
                    tracing::warn!(backend = B::NAME, %method, error = %err, "backend unavailable");
                    Status::unavailable(format!("{} is unavailable: {err}", B::NAME)).into_http()
                }))
        })
    }
}

/// A forwarded response body that ends with UNAVAILABLE instead of breaking. When the backend's
/// connection fails mid-response (it restarted during a `WatchOrder` stream), relaying the error
/// would reset the caller's HTTP/2 stream, which clients report as INTERNAL; a gRPC status in
/// the trailers tells them what happened: the backend is unavailable, call again.
#[derive(Debug)]
pub struct UnavailableOnError {
    inner: Body,
    backend: &'static str,
    ended: bool,
}

impl UnavailableOnError {
    /// Relays `inner`, the response body of `backend`.
    pub fn new(inner: Body, backend: &'static str) -> Self {
        Self {
            inner,
            backend,
            ended: false,
        }
    }
}

impl http_body::Body for UnavailableOnError {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Err(err)) => {
                self.ended = true;
                tracing::warn!(backend = self.backend, error = %err, "backend failed mid-response");
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", HeaderValue::from(tonic::Code::Unavailable as i32));
                trailers.insert(
                    "grpc-message",
                    HeaderValue::from_static("the backend became unavailable during the call; call again"),
                );
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            other => Poll::Ready(other),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn a_body_that_breaks_ends_with_unavailable() {
        let frames = futures::stream::iter([
            Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
            Err(Status::internal("connection reset")),
        ]);
        let broken = Body::new(http_body_util::StreamBody::new(frames));
        let collected = UnavailableOnError::new(broken, "esim.ordering.v1.OrderingService")
            .collect()
            .await
            .expect("no error reaches the caller");
        let trailers = collected.trailers().cloned().expect("a status in the trailers");
        assert_eq!(trailers.get("grpc-status").unwrap(), "14");
        assert_eq!(
            collected.to_bytes().len(),
            5,
            "the data before the failure is relayed"
        );
    }
}

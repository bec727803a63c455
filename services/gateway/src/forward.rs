//! Forwarding one backend gRPC service frame for frame: the HTTP/2 request (headers, body
//! stream, trailers) goes to the backend's channel unchanged but for what the [`PeerChannel`]
//! stamps on it (the internal credential, the request id, a child `traceparent`, the remaining
//! deadline), and its response comes back the same way. Nothing is decoded, so any method,
//! unary or streaming, works, including methods added to a backend later.

use std::{
    convert::Infallible,
    marker::PhantomData,
    task::{Context, Poll},
};

use esim_runtime::peer::PeerChannel;
use futures::future::BoxFuture;
use tonic::{Status, body::Body, server::NamedService};
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
            Ok(call.await.unwrap_or_else(|err| {
                tracing::warn!(backend = B::NAME, %method, error = %err, "backend unavailable");
                Status::unavailable(format!("{} is unavailable: {err}", B::NAME)).into_http()
            }))
        })
    }
}

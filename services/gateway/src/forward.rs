//! Forwarding one backend gRPC service frame for frame: the HTTP/2 request (headers, body
//! stream, trailers) goes to the backend's channel unchanged, and its response comes back the
//! same way. Nothing is decoded, so any method, unary or streaming, works, including methods
//! added to a backend later.

use std::{
    convert::Infallible,
    marker::PhantomData,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use tonic::{Status, body::Body, server::NamedService, transport::Channel};
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
    channel: Channel,
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
    pub fn new(channel: Channel) -> Self {
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
        // Readiness is awaited per call below, so a backend that is down turns into a status
        // for that call instead of stalling the gateway's connection.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // Channel is a cheap handle; the one polled ready must be the one called.
        let mut channel = self.channel.clone();
        Box::pin(async move {
            let method = request.uri().path().to_owned();
            let result = async {
                futures::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
                channel.call(request).await
            }
            .await;
            Ok(result.unwrap_or_else(|err| {
                tracing::warn!(backend = B::NAME, %method, error = %err, "backend unavailable");
                Status::unavailable(format!("{} is unavailable: {err}", B::NAME)).into_http()
            }))
        })
    }
}

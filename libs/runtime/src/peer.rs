//! Channels to other services of the suite (the gateway's backends, ordering's peers). Every
//! call made through a [`PeerChannel`] carries the internal credential and the current call's
//! request id and trace context, and its `grpc-timeout` is what the current caller still waits
//! (so the callee stops when nobody waits any more); a call whose caller already gave up is not
//! sent. Channels connect lazily: a service starts before its peers and reconnects by itself.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use esim_config::ConfigError;
use futures::future::{BoxFuture, Either};
use http::{HeaderName, Request, Response};
use tonic::{
    Status,
    body::Body,
    transport::{Channel, Endpoint},
};
use tower::Service;

use crate::{
    call_context::{GRPC_TIMEOUT_HEADER, format_grpc_timeout, parse_grpc_timeout, per_call_header},
    internal::{self, InternalCredential},
};

/// A channel to a peer service; cheap to clone.
#[derive(Debug, Clone)]
pub struct PeerChannel {
    connections: Arc<[Channel]>,
    next: Arc<AtomicUsize>,
    credential: Option<InternalCredential>,
    default_timeout: Option<Duration>,
}

impl PeerChannel {
    /// A lazily connecting channel to `url` (`key` names the setting, for errors), sending
    /// `credential` on every call. `connections` HTTP/2 connections share the load (one
    /// connection serialises on one socket and one connection task).
    pub fn connect_lazy(
        key: &str,
        url: &str,
        credential: Option<InternalCredential>,
        connections: usize,
    ) -> Result<Self, ConfigError> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|err| ConfigError::Invalid {
                key: key.to_owned(),
                value: url.to_owned(),
                reason: err.to_string(),
            })?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        Ok(Self {
            connections: (0..connections.max(1))
                .map(|_| endpoint.clone().connect_lazy())
                .collect(),
            next: Arc::default(),
            credential,
            default_timeout: None,
        })
    }

    /// Gives calls made outside any caller's deadline (background work) this timeout.
    pub fn with_default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }

    fn stamp(&self, request: &mut Request<Body>) -> Result<(), Status> {
        let context = esim_context::current();
        let headers = request.headers_mut();
        if let Some(credential) = &self.credential {
            headers.insert(internal::HEADER, credential.header_value());
        }
        if let Some(context) = &context {
            for (name, value) in context.outgoing_headers() {
                if let Some(value) = per_call_header(&value) {
                    headers.insert(HeaderName::from_static(name), value);
                }
            }
        }
        let asked = headers
            .get(GRPC_TIMEOUT_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_grpc_timeout);
        let remaining = context.as_ref().and_then(|context| context.remaining());
        if remaining.is_some_and(|left| left.is_zero()) {
            return Err(Status::deadline_exceeded(
                "the caller's deadline passed before this call was sent",
            ));
        }
        let timeout = [
            asked,
            remaining,
            self.default_timeout.filter(|_| remaining.is_none()),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(timeout) = timeout
            && let Some(value) = per_call_header(&format_grpc_timeout(timeout))
        {
            headers.insert(GRPC_TIMEOUT_HEADER, value);
        }
        Ok(())
    }
}

impl Service<Request<Body>> for PeerChannel {
    type Response = Response<Body>;
    type Error = tonic::transport::Error;
    type Future = Either<
        BoxFuture<'static, Result<Response<Body>, tonic::transport::Error>>,
        std::future::Ready<Result<Response<Body>, tonic::transport::Error>>,
    >;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is awaited per call on the connection it picks, so one slow connection
        // does not hold up calls that another can take.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        if let Err(status) = self.stamp(&mut request) {
            return Either::Right(std::future::ready(Ok(status.into_http())));
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        // A Channel is a cheap handle; the clone polled ready must be the one called.
        let mut channel = self.connections[turn].clone();
        Either::Left(Box::pin(async move {
            futures::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
            channel.call(request).await
        }))
    }
}

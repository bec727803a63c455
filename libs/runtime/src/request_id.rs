//! The request id: taken from the caller's `x-request-id` (or generated), passed on to every
//! backend and upstream call, echoed in the response, and recorded on the RPC's tracing span so
//! every log line of the call carries it.

use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};
use tracing::Instrument;

/// The metadata key carrying the request id.
pub const HEADER: &str = "x-request-id";

/// Longest request id we accept from a caller; longer ones are replaced (MP echoes up to 500).
const MAX_LEN: usize = 128;

/// The request id of a call, stored in the request's extensions by [`RequestIdLayer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// A new random, time-ordered id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The request id of a tonic request (set by [`RequestIdLayer`]); generates one if absent,
/// e.g. in a unit test that calls a handler directly.
pub fn of<T>(request: &tonic::Request<T>) -> RequestId {
    request
        .extensions()
        .get::<RequestId>()
        .cloned()
        .or_else(|| {
            request
                .metadata()
                .get(HEADER)
                .and_then(|value| value.to_str().ok())
                .filter(|id| valid(id))
                .map(|id| RequestId(id.to_owned()))
        })
        .unwrap_or_else(RequestId::generate)
}

fn valid(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Tower layer that stamps the request id on every call (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

/// See [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestIdService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let id = request
            .headers()
            .get(HEADER)
            .and_then(|value| value.to_str().ok())
            .filter(|id| valid(id))
            .map(|id| RequestId(id.to_owned()))
            .unwrap_or_else(RequestId::generate);
        let header = HeaderValue::from_str(id.as_str()).ok();
        if let Some(header) = &header {
            // Forwarding services (the gateway) pass the header on as it is now.
            request.headers_mut().insert(HEADER, header.clone());
        }
        let span = tracing::info_span!("rpc", method = %request.uri().path(), request_id = %id.as_str());
        request.extensions_mut().insert(id);
        let future = self.inner.call(request);
        Box::pin(
            async move {
                let mut response = future.await?;
                if let Some(header) = header {
                    response.headers_mut().insert(HEADER, header);
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}

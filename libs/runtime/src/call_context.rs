//! The server side of [`esim_context`]: every call's request id (the caller's `x-request-id` or
//! a new one), its W3C trace context (a child of the caller's `traceparent`, or a new trace) and
//! its deadline (`grpc-timeout`) are read here, put in the request's extensions, recorded on the
//! call's tracing span (so every log line of the call carries them), and made [`current`] while
//! the handler runs, so every outgoing call passes them on. A call whose deadline has already
//! passed is answered DEADLINE_EXCEEDED without running, and a request whose bytes do not
//! decode is answered INVALID_ARGUMENT (not tonic's INTERNAL).
//!
//! [`current`]: esim_context::current

use std::{
    task::{Context, Poll},
    time::{Duration, Instant},
};

use esim_context::{REQUEST_ID_HEADER, TRACEPARENT_HEADER, TraceParent};
use http::{HeaderMap, HeaderValue, Request, Response};
use tonic::{Status, body::Body};
use tower::{Layer, Service};
use tracing::Instrument;

pub use esim_context::{CallContext, RequestId};

/// The gRPC deadline header.
pub const GRPC_TIMEOUT_HEADER: &str = "grpc-timeout";

/// The request id of a tonic request (set by [`CallContextLayer`]); generates one if absent,
/// e.g. in a unit test that calls a handler directly.
pub fn request_id<T>(request: &tonic::Request<T>) -> RequestId {
    request
        .extensions()
        .get::<CallContext>()
        .map(|context| context.request_id.clone())
        .or_else(|| {
            request
                .metadata()
                .get(REQUEST_ID_HEADER)
                .and_then(|value| value.to_str().ok())
                .and_then(RequestId::parse)
        })
        .unwrap_or_else(RequestId::generate)
}

/// The context of an incoming call, from its headers.
pub fn from_headers(headers: &HeaderMap) -> CallContext {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    CallContext {
        request_id: text(REQUEST_ID_HEADER)
            .and_then(RequestId::parse)
            .unwrap_or_else(RequestId::generate),
        trace: text(TRACEPARENT_HEADER)
            .and_then(TraceParent::parse)
            .map_or_else(TraceParent::generate, |parent| parent.child()),
        deadline: text(GRPC_TIMEOUT_HEADER)
            .and_then(parse_grpc_timeout)
            .map(|timeout| Instant::now() + timeout),
    }
}

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Formats `timeout` as a `grpc-timeout` value (millisecond precision, rounded up, so a
/// remaining budget never reads as zero before it is).
pub fn format_grpc_timeout(timeout: Duration) -> String {
    let millis = timeout.as_nanos().div_ceil(1_000_000);
    if millis < 100_000_000 {
        format!("{millis}m")
    } else {
        format!("{}S", timeout.as_secs().min(99_999_999))
    }
}

/// A header value that differs on every call (request id, `traceparent`, `grpc-timeout`),
/// marked never-indexed: HPACK would otherwise add each one to the connection's header table,
/// where it is never used again and evicts the entries that do repeat (paths, content type,
/// the internal credential), costing every later call on the connection more to encode and
/// decode.
pub fn per_call_header(value: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(value).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// tonic answers a request whose bytes are not the method's protobuf message with INTERNAL
/// ("failed to decode Protobuf message"), as gRPC's status-code table suggests; but the fault is
/// the caller's, nothing failed on our side, and callers and alerts treat INTERNAL as our bug:
/// we answer INVALID_ARGUMENT with the same message.
fn undecodable_is_invalid_argument(response: &mut Response<Body>) {
    const UNDECODABLE: &[u8] = b"failed%20to%20decode%20Protobuf%20message";
    let headers = response.headers_mut();
    let internal = headers.get("grpc-status").is_some_and(|status| status == "13");
    let undecodable = headers
        .get("grpc-message")
        .is_some_and(|message| message.as_bytes().starts_with(UNDECODABLE));
    if internal && undecodable {
        headers.insert("grpc-status", HeaderValue::from_static("3"));
    }
}

/// Tower layer that establishes the call context (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct CallContextLayer;

impl<S> Layer<S> for CallContextLayer {
    type Service = CallContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallContextService { inner }
    }
}

/// See [`CallContextLayer`].
#[derive(Debug, Clone)]
pub struct CallContextService<S> {
    inner: S,
}

impl<S, ReqBody> Service<Request<ReqBody>> for CallContextService<S>
where
    S: Service<Request<ReqBody>, Response = Response<Body>> + Send,
    S::Error: Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let context = from_headers(request.headers());
        let id_header = per_call_header(context.request_id.as_str());
        if let Some(header) = &id_header {
            request.headers_mut().insert(REQUEST_ID_HEADER, header.clone());
        }
        let span = tracing::info_span!(
            "rpc",
            method = %request.uri().path(),
            request_id = %context.request_id,
            trace_id = %context.trace.trace_id(),
            // Filled in by the gateway once the caller's API key is known.
            api_key = tracing::field::Empty,
            key_prefix = tracing::field::Empty,
        );
        let echo = |mut response: Response<Body>| {
            if let Some(header) = id_header {
                response.headers_mut().insert(REQUEST_ID_HEADER, header);
            }
            undecodable_is_invalid_argument(&mut response);
            response
        };
        if context.expired() {
            let _entered = span.enter();
            tracing::info!("deadline passed before the call started");
            let status = Status::deadline_exceeded("the caller's deadline passed before the call started");
            return Box::pin(std::future::ready(Ok(echo(status.into_http()))));
        }
        request.extensions_mut().insert(context.clone());
        let future = self.inner.call(request);
        Box::pin(esim_context::scope(context, async move { future.await.map(echo) }).instrument(span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_call_headers_stay_out_of_the_hpack_table() {
        let value = per_call_header("0190f4b2-7c1e-7a3b-9c2d-4e5f60718293").expect("valid");
        assert!(
            value.is_sensitive(),
            "never-indexed, so it cannot evict repeating headers"
        );
        assert!(per_call_header("line\nbreak").is_none());
    }

    #[test]
    fn grpc_timeouts_parse_and_format() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        assert_eq!(parse_grpc_timeout("0n"), Some(Duration::ZERO));
        for bad in ["", "m", "123456789m", "10x", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
        assert_eq!(format_grpc_timeout(Duration::from_micros(1500)), "2m");
        assert_eq!(
            parse_grpc_timeout(&format_grpc_timeout(Duration::from_secs(30))),
            Some(Duration::from_secs(30))
        );
    }

    #[tokio::test]
    async fn a_call_whose_deadline_passed_is_not_started() {
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = ran.clone();
        let mut service = CallContextLayer.layer(tower::service_fn(move |_request: Request<Body>| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Ok::<_, std::convert::Infallible>(Response::new(Body::empty())) }
        }));
        let request = |timeout: &'static str| {
            Request::builder()
                .uri("/test.Slow/Call")
                .header(GRPC_TIMEOUT_HEADER, timeout)
                .body(Body::empty())
                .unwrap()
        };
        let response = service.call(request("0n")).await.unwrap();
        assert_eq!(
            response.headers().get("grpc-status").unwrap(),
            "4",
            "DEADLINE_EXCEEDED"
        );
        assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 0);

        service.call(request("5S")).await.unwrap();
        assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn undecodable_requests_are_invalid_argument_not_internal() {
        let mut service = CallContextLayer.layer(tower::service_fn(|_request: Request<Body>| async {
            let status = Status::internal("failed to decode Protobuf message: invalid wire type value: 7");
            Ok::<_, std::convert::Infallible>(status.into_http())
        }));
        let request = Request::builder()
            .uri("/test.Slow/Call")
            .body(Body::empty())
            .unwrap();
        let response = service.call(request).await.unwrap();
        assert_eq!(response.headers().get("grpc-status").unwrap(), "3");

        let mut other = CallContextLayer.layer(tower::service_fn(|_request: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(Status::internal("database is on fire").into_http())
        }));
        let request = Request::builder()
            .uri("/test.Slow/Call")
            .body(Body::empty())
            .unwrap();
        let response = other.call(request).await.unwrap();
        assert_eq!(
            response.headers().get("grpc-status").unwrap(),
            "13",
            "other INTERNALs stay"
        );
    }

    #[test]
    fn the_context_continues_the_callers_trace() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("abc-123"));
        headers.insert(
            TRACEPARENT_HEADER,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        headers.insert(GRPC_TIMEOUT_HEADER, HeaderValue::from_static("5S"));
        let context = from_headers(&headers);
        assert_eq!(context.request_id.as_str(), "abc-123");
        assert_eq!(
            context.trace.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(context.remaining().unwrap() > Duration::from_secs(4));

        let fresh = from_headers(&HeaderMap::new());
        assert!(fresh.deadline.is_none());
        assert_ne!(fresh.trace.trace_id(), context.trace.trace_id());
    }
}

//! The context of one call: its request id, its W3C trace context and its deadline. The server
//! layer in `esim-runtime` builds it from the incoming headers and runs the handler inside
//! [`scope`]; every outgoing call made while handling it — gRPC to a peer service, HTTP to an
//! upstream — reads [`current`] and passes the id and trace on, and waits no longer than the
//! caller still waits.
//!
//! Work spawned onto other tasks does not inherit the context; capture it with [`current`] and
//! run the spawned future in [`scope`] when the work belongs to the call.

use std::{
    fmt,
    future::Future,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// Metadata / HTTP header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// W3C Trace Context header.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// Longest request id accepted from a caller; longer ones are replaced (MP echoes up to 500).
const MAX_REQUEST_ID_LEN: usize = 128;

/// The id of one call as the caller named it (`x-request-id`) or as we generated it. Shared,
/// not copied: every call clones it into its extensions, its task-local context and each
/// outgoing call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// A new random, time-ordered id (UUIDv7). Built from the thread's RNG rather than
    /// `Uuid::now_v7`, whose process-wide counter sits behind a mutex that every call on every
    /// core would take, and whose random bytes cost a system call each.
    pub fn generate() -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
        let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &rand::random()).into_uuid();
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        Self(Arc::from(&*uuid.hyphenated().encode_lower(&mut text)))
    }

    /// The caller's id, if acceptable: 1-128 printable ASCII characters without spaces.
    pub fn parse(text: &str) -> Option<Self> {
        let valid = !text.is_empty()
            && text.len() <= MAX_REQUEST_ID_LEN
            && text.bytes().all(|b| b.is_ascii_graphic());
        valid.then(|| Self(Arc::from(text)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A W3C `traceparent` (version 00): the trace this call belongs to and the span that called.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

impl TraceParent {
    /// The start of a new trace (sampled flag set, so a collector downstream keeps it).
    pub fn generate() -> Self {
        Self {
            trace_id: nonzero_random(),
            parent_id: nonzero_random(),
            flags: 0x01,
        }
    }

    /// Parses `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`; all-zero ids and
    /// version `ff` are invalid per the spec. Later versions are read by their first four
    /// fields, as the spec asks.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('-');
        let version = parts.next()?;
        let trace_id = hex_array::<16>(parts.next()?)?;
        let parent_id = hex_array::<8>(parts.next()?)?;
        let flags = hex_array::<1>(parts.next()?)?[0];
        let version = hex_array::<1>(version)?[0];
        let rest_ok = if version == 0 {
            parts.next().is_none()
        } else {
            true
        };
        let valid = version != 0xff && rest_ok && trace_id != [0; 16] && parent_id != [0; 8];
        valid.then_some(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The same trace with a new span id: what an outgoing call sends as its parent.
    pub fn child(&self) -> Self {
        Self {
            parent_id: nonzero_random(),
            ..*self
        }
    }

    /// The trace id; displays as 32 lowercase hex digits.
    pub fn trace_id(&self) -> TraceId {
        TraceId(self.trace_id)
    }

    /// The header value.
    pub fn header_value(&self) -> String {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        push_hex(&mut out, &self.trace_id);
        out.push('-');
        push_hex(&mut out, &self.parent_id);
        out.push('-');
        push_hex(&mut out, &[self.flags]);
        out
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header_value())
    }
}

/// A trace id, for log fields: displays as 32 lowercase hex digits without allocating.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceId([u8; 16]);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut digits = [0u8; 32];
        for (pair, byte) in digits.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
            pair[1] = HEX_DIGITS[usize::from(byte & 0x0f)];
        }
        // Hex digits are ASCII.
        f.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Everything that travels with one call.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The request id.
    pub request_id: RequestId,
    /// This hop's trace context (its `parent_id` is this service's span).
    pub trace: TraceParent,
    /// When the caller stops waiting, if it said (`grpc-timeout`).
    pub deadline: Option<Instant>,
}

impl CallContext {
    /// A context for work that no caller started (a poller, a saga resumed after a restart).
    pub fn background() -> Self {
        Self {
            request_id: RequestId::generate(),
            trace: TraceParent::generate(),
            deadline: None,
        }
    }

    /// Time left before the deadline: `None` when there is none, zero once it passed.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }

    /// Whether the caller has already given up.
    pub fn expired(&self) -> bool {
        self.remaining().is_some_and(|left| left.is_zero())
    }

    /// The headers an outgoing call carries: the request id and a child `traceparent`.
    pub fn outgoing_headers(&self) -> [(&'static str, String); 2] {
        [
            (REQUEST_ID_HEADER, self.request_id.to_string()),
            (TRACEPARENT_HEADER, self.trace.child().header_value()),
        ]
    }
}

tokio::task_local! {
    static CURRENT: CallContext;
}

/// The context of the call being handled on this task, if any.
pub fn current() -> Option<CallContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `future` with `context` as the current call context.
pub async fn scope<F: Future>(context: CallContext, future: F) -> F::Output {
    CURRENT.scope(context, future).await
}

/// `timeout` shortened to what the current caller still waits, if that is less.
pub fn cap_timeout(timeout: Duration) -> Duration {
    current()
        .and_then(|context| context.remaining())
        .map_or(timeout, |left| left.min(timeout))
}

fn nonzero_random<const N: usize>() -> [u8; N] {
    loop {
        let bytes: [u8; N] = rand::random();
        if bytes != [0; N] {
            return bytes;
        }
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn push_hex(out: &mut String, bytes: &[u8]) {
    for byte in bytes {
        out.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
    }
}

fn hex_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_prints_the_spec_example() {
        let trace = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(trace.header_value(), EXAMPLE);
        assert_eq!(trace.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn a_child_keeps_the_trace_and_changes_the_span() {
        let trace = TraceParent::parse(EXAMPLE).unwrap();
        let child = TraceParent::parse(&trace.child().header_value()).unwrap();
        assert_eq!(child.trace_id(), trace.trace_id());
        assert_ne!(child.header_value(), trace.header_value());
    }

    #[test]
    fn rejects_invalid_traceparents() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad:?} accepted");
        }
        // A future version may append fields.
        assert!(TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz").is_some());
    }

    #[test]
    fn generated_request_ids_are_distinct_time_ordered_uuids() {
        let first = RequestId::generate();
        std::thread::sleep(Duration::from_millis(2));
        let second = RequestId::generate();
        for id in [&first, &second] {
            let uuid = uuid::Uuid::parse_str(id.as_str()).expect("a UUID");
            assert_eq!(uuid.get_version_num(), 7);
            assert_eq!(id.as_str(), id.as_str().to_lowercase());
        }
        assert!(first.as_str() < second.as_str(), "{first} then {second}");
    }

    #[test]
    fn request_ids_are_bounded_printable_ascii() {
        assert!(RequestId::parse("order-42").is_some());
        assert!(RequestId::parse("").is_none());
        assert!(RequestId::parse("has space").is_none());
        assert!(RequestId::parse(&"x".repeat(129)).is_none());
        assert!(RequestId::parse("ünïcode").is_none());
    }

    #[tokio::test]
    async fn the_context_is_visible_inside_its_scope_only() {
        assert!(current().is_none());
        let context = CallContext {
            deadline: Some(Instant::now() + Duration::from_millis(50)),
            ..CallContext::background()
        };
        let id = context.request_id.clone();
        scope(context, async move {
            let inside = current().unwrap();
            assert_eq!(inside.request_id, id);
            assert!(cap_timeout(Duration::from_secs(30)) <= Duration::from_millis(50));
        })
        .await;
        assert!(current().is_none());
        assert_eq!(cap_timeout(Duration::from_secs(30)), Duration::from_secs(30));
    }
}

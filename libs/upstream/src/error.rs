//! The one error type of every upstream call.

use std::fmt;
use std::time::Duration;

use thiserror::Error;

/// Which upstream platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Upstream {
    /// LinksField Marketing Place.
    Mp,
    /// LinksField eSIM QR Mall.
    Fms,
    /// BICS SIM for Things.
    Sft,
}

impl Upstream {
    /// Short name for logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mp => "MP",
            Self::Fms => "FMS",
            Self::Sft => "SFT",
        }
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// FMS business codes that callers branch on (`code` in the FMS envelope).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FmsCode {
    /// 2: wrong parameters.
    BadParameters,
    /// 7: the user's token expired (the client logs in again once by itself).
    TokenExpired,
    /// 1102: time conversion exception.
    TimeConversion,
    /// 9999: generic error.
    Error,
    /// 6006: the payment was notified more than 10 minutes after the pre-order; the
    /// profile is released — start again with a new pre-order.
    PreOrderTimeout,
    /// 10008: no such order.
    NoSuchOrder,
    /// 10009: price mismatch.
    PriceMismatch,
    /// Any other non-zero code.
    Other(i64),
}

impl FmsCode {
    /// Maps a raw code (non-zero).
    pub fn from_code(code: i64) -> Self {
        match code {
            2 => Self::BadParameters,
            7 => Self::TokenExpired,
            1102 => Self::TimeConversion,
            9999 => Self::Error,
            6006 => Self::PreOrderTimeout,
            10008 => Self::NoSuchOrder,
            10009 => Self::PriceMismatch,
            other => Self::Other(other),
        }
    }
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request could not be sent or the connection broke (the upstream may or may
    /// not have acted on it).
    Transport(String),
    /// No answer in time (the upstream may or may not have acted on it).
    Timeout(Duration),
    /// A non-2xx HTTP status (with a short excerpt of the body).
    HttpStatus {
        /// The HTTP status code.
        status: u16,
        /// Up to 200 characters of the body.
        body: String,
    },
    /// The envelope carried a failure code.
    Upstream {
        /// The raw code (`code` / `resultCode`).
        code: i64,
        /// The upstream's message.
        message: String,
        /// The FMS meaning of `code`, for FMS errors.
        fms: Option<FmsCode>,
    },
    /// The body was not the documented JSON, or a field held an invalid value.
    Decode(String),
    /// The circuit breaker is open: the call was not sent.
    CircuitOpen,
    /// Authentication failed (bad signature, bad credentials, expired token after retry).
    Auth(String),
    /// A setting or argument is unusable (the call was not sent).
    Invalid(String),
}

/// An upstream call failed: which upstream, which call, and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{upstream} {call} failed: {kind}")]
pub struct UpstreamError {
    /// The platform.
    pub upstream: Upstream,
    /// The call (e.g. `activationCode`).
    pub call: &'static str,
    /// What went wrong.
    pub kind: ErrorKind,
    /// Whether the call was sent in a way that may have changed upstream state (a create
    /// or mutation), so that a transport failure leaves the outcome unknown.
    pub mutating: bool,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(m) => write!(f, "transport error: {m}"),
            Self::Timeout(d) => write!(f, "timed out after {} ms", d.as_millis()),
            Self::HttpStatus { status, body } => write!(f, "HTTP {status}: {body}"),
            Self::Upstream { code, message, .. } => write!(f, "upstream code {code}: {message}"),
            Self::Decode(m) => write!(f, "undecodable response: {m}"),
            Self::CircuitOpen => f.write_str("circuit breaker open, call not sent"),
            Self::Auth(m) => write!(f, "authentication failed: {m}"),
            Self::Invalid(m) => write!(f, "invalid request: {m}"),
        }
    }
}

impl UpstreamError {
    /// A new error.
    pub fn new(upstream: Upstream, call: &'static str, kind: ErrorKind) -> Self {
        Self {
            upstream,
            call,
            kind,
            mutating: false,
        }
    }

    /// Marks the error as coming from a mutating call.
    pub fn mutating(mut self, mutating: bool) -> Self {
        self.mutating = mutating;
        self
    }

    /// Whether repeating the same request may succeed: transport errors, timeouts, 5xx,
    /// 429 and an open breaker are; business codes, 4xx and decode errors are not.
    /// (Only reads are retried by the clients; a caller retrying a create must first
    /// reconcile — see [`UpstreamError::outcome_unknown`].)
    pub fn is_retryable(&self) -> bool {
        match &self.kind {
            ErrorKind::Transport(_) | ErrorKind::Timeout(_) | ErrorKind::CircuitOpen => true,
            ErrorKind::HttpStatus { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// Whether the upstream may have carried out a create/mutation although we got no
    /// answer (timeout, broken connection, 5xx from a gateway after forwarding): such an
    /// order is reconciled by query, never re-sent blindly. `false` means the call
    /// definitely failed (it was not sent, or the upstream answered with a failure).
    pub fn outcome_unknown(&self) -> bool {
        self.mutating
            && match &self.kind {
                ErrorKind::Transport(_) | ErrorKind::Timeout(_) => true,
                ErrorKind::HttpStatus { status, .. } => *status >= 500,
                ErrorKind::Decode(_) => true,
                _ => false,
            }
    }

    /// The upstream's business code, if the envelope carried one.
    pub fn upstream_code(&self) -> Option<i64> {
        match &self.kind {
            ErrorKind::Upstream { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The FMS code, for FMS business errors (so callers can branch on 6006).
    pub fn fms_code(&self) -> Option<FmsCode> {
        match &self.kind {
            ErrorKind::Upstream { fms, .. } => *fms,
            _ => None,
        }
    }
}

/// Up to `n` characters of a body, for error messages.
pub(crate) fn excerpt(body: &[u8], n: usize) -> String {
    let s = String::from_utf8_lossy(body);
    let mut out: String = s.chars().take(n).collect();
    if s.chars().count() > n {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_upstream_and_call() {
        let e = UpstreamError::new(
            Upstream::Mp,
            "activationCode",
            ErrorKind::Timeout(Duration::from_secs(3)),
        )
        .mutating(true);
        assert_eq!(e.to_string(), "MP activationCode failed: timed out after 3000 ms");
        assert!(e.is_retryable());
        assert!(e.outcome_unknown());
        let e = UpstreamError::new(
            Upstream::Fms,
            "paymentWebhook",
            ErrorKind::Upstream {
                code: 6006,
                message: "PreOrder Timeout".into(),
                fms: Some(FmsCode::from_code(6006)),
            },
        )
        .mutating(true);
        assert_eq!(e.fms_code(), Some(FmsCode::PreOrderTimeout));
        assert!(!e.is_retryable());
        assert!(!e.outcome_unknown());
    }
}

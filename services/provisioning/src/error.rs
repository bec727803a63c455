//! The one error type of the provisioning service, mapped once to `tonic::Status`.

use std::time::Duration;

use esim_upstream::UpstreamError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Everything a provisioning call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ProvisioningError {
    /// A request field is invalid; nothing was written and no upstream was called.
    #[error("{field}: {message}")]
    InvalidArgument {
        /// The request field path (`esim.iccid`, `page_token`, ...).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The named resource does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The resource exists already, or a request id was reused for another request.
    #[error("{0}")]
    AlreadyExists(String),
    /// The eSIM is not in a state that allows the call (nothing was sent upstream), or the
    /// upstream refused the change for good.
    #[error("{0}")]
    FailedPrecondition(String),
    /// No SIM is available to claim: try again later.
    #[error("{0}")]
    Exhausted(String),
    /// Another call holds the same provision (same request id) right now.
    #[error("{0}")]
    Aborted(String),
    /// The upstream is unreachable or failing; the message names the call.
    #[error("{message}")]
    Unavailable {
        /// What failed, for people.
        message: String,
    },
    /// An upstream call failed (mapped by its kind).
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// Something that should not happen (a stored value that no longer parses).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ProvisioningError {
    /// An INVALID_ARGUMENT naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The gRPC code this error answers with.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument { .. } => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::Exhausted(_) => Code::ResourceExhausted,
            Self::Aborted(_) => Code::Aborted,
            Self::Unavailable { .. } | Self::Database(_) => Code::Unavailable,
            Self::Upstream(err) => upstream_code(err),
            Self::Internal(_) => Code::Internal,
        }
    }
}

/// An upstream outage (transport, timeout, 5xx, 429, open breaker) is UNAVAILABLE; the
/// upstream's refusal of the request is FAILED_PRECONDITION; anything else (bad answers,
/// bad credentials) is INTERNAL on our side.
pub fn upstream_code(err: &UpstreamError) -> Code {
    use esim_upstream::ErrorKind;
    if err.is_retryable() {
        return Code::Unavailable;
    }
    match err.kind {
        ErrorKind::Upstream { .. } | ErrorKind::HttpStatus { .. } => Code::FailedPrecondition,
        ErrorKind::Timeout(_) | ErrorKind::Transport(_) | ErrorKind::CircuitOpen => Code::Unavailable,
        ErrorKind::Decode(_) | ErrorKind::Auth(_) | ErrorKind::Invalid(_) => Code::Internal,
    }
}

/// The crate's result type.
pub type Result<T, E = ProvisioningError> = std::result::Result<T, E>;

/// How long a caller should wait before retrying a provision that found no SIM.
pub const EXHAUSTED_RETRY_AFTER: Duration = Duration::from_secs(60);

impl From<esim_runtime::api::FieldViolation> for ProvisioningError {
    fn from(violation: esim_runtime::api::FieldViolation) -> Self {
        Self::invalid(violation.field, violation.message)
    }
}

impl From<ProvisioningError> for Status {
    fn from(err: ProvisioningError) -> Self {
        let code = err.code();
        match err {
            ProvisioningError::InvalidArgument { field, message } => {
                esim_runtime::status::invalid_argument(&field, message)
            }
            ProvisioningError::Exhausted(msg) => {
                esim_runtime::status::resource_exhausted(msg, EXHAUSTED_RETRY_AFTER)
            }
            ProvisioningError::Database(err) => {
                // Details stay in the log: they may name tables or connection targets.
                tracing::error!(error = %err, "provisioning database error");
                Status::new(code, "the provisioning database is unavailable")
            }
            ProvisioningError::Internal(msg) => {
                tracing::error!(error = %msg, "provisioning internal error");
                Status::new(code, "internal error")
            }
            ProvisioningError::Upstream(err) => {
                let message = err.to_string();
                if code == Code::Unavailable {
                    Status::with_error_details(
                        code,
                        message,
                        ErrorDetails::with_retry_info(Some(Duration::from_secs(5))),
                    )
                } else {
                    Status::new(code, message)
                }
            }
            other => Status::new(code, other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use esim_upstream::{ErrorKind, Upstream};

    use super::*;

    #[test]
    fn upstream_outages_are_unavailable_and_refusals_failed_precondition() {
        let outage = UpstreamError::new(
            Upstream::Sft,
            "SubscribeAddon",
            ErrorKind::HttpStatus {
                status: 503,
                body: String::new(),
            },
        );
        assert_eq!(
            Status::from(ProvisioningError::from(outage)).code(),
            Code::Unavailable
        );
        let refusal = UpstreamError::new(
            Upstream::Mp,
            "switchOrder",
            ErrorKind::Upstream {
                code: 500,
                message: "order finished".into(),
                fms: None,
            },
        );
        let status = Status::from(ProvisioningError::from(refusal));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(status.message().contains("switchOrder"));
        let invalid = Status::from(ProvisioningError::invalid("esim.iccid", "bad"));
        assert_eq!(invalid.code(), Code::InvalidArgument);
        let exhausted = Status::from(ProvisioningError::Exhausted("no SIM".into()));
        assert_eq!(exhausted.code(), Code::ResourceExhausted);
    }
}

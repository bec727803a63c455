//! The one error type of the gateway's key management, mapped once to `tonic::Status`.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The resource type of API keys (`google.api.resource` type), for error details.
pub const API_KEY_TYPE: &str = "gateway.esim.internal/ApiKey";

/// Everything a key management call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A request field is invalid; nothing was changed.
    #[error("{field}: {message}")]
    InvalidArgument {
        /// The request field path (`api_key.display_name`, ...).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The named key does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A request id was used before: `resource` names the key its first call made, if any.
    #[error("{message}")]
    AlreadyExists {
        /// What happened.
        message: String,
        /// The key the first call created (`apiKeys/...`), if it created one.
        resource: Option<String>,
    },
    /// The key is in a state that forbids the change (revoked).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// Something that should not happen (a stored value that no longer parses, no randomness).
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    /// An INVALID_ARGUMENT naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<esim_runtime::api::FieldViolation> for GatewayError {
    fn from(violation: esim_runtime::api::FieldViolation) -> Self {
        Self::InvalidArgument {
            field: violation.field,
            message: violation.message,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = GatewayError> = std::result::Result<T, E>;

impl From<GatewayError> for Status {
    fn from(err: GatewayError) -> Self {
        match err {
            GatewayError::InvalidArgument { field, message } => {
                esim_runtime::status::invalid_argument(&field, message)
            }
            GatewayError::NotFound(what) => Status::new(Code::NotFound, format!("{what} not found")),
            GatewayError::AlreadyExists {
                message,
                resource: Some(name),
            } => Status::with_error_details(
                Code::AlreadyExists,
                message,
                ErrorDetails::with_resource_info(API_KEY_TYPE, name, "", "created by the first call"),
            ),
            GatewayError::AlreadyExists {
                message,
                resource: None,
            } => Status::new(Code::AlreadyExists, message),
            GatewayError::FailedPrecondition(msg) => Status::new(Code::FailedPrecondition, msg),
            GatewayError::Database(err) => {
                // Details stay in the log: they may name tables or connection targets.
                tracing::error!(error = %err, "gateway database error");
                Status::new(Code::Unavailable, "the gateway database is unavailable")
            }
            GatewayError::Internal(msg) => {
                tracing::error!(error = %msg, "gateway internal error");
                Status::new(Code::Internal, "internal error")
            }
        }
    }
}

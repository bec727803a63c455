//! The one error type of the usage service, mapped once to `tonic::Status`.

use tonic::{Code, Status};

/// Everything a usage call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// A request field is invalid; nothing was changed.
    #[error("{field}: {message}")]
    InvalidArgument {
        /// The request field path.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The named resource does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with the stored state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The upstream could not answer and there is nothing stored to serve instead.
    #[error("{0}")]
    Unavailable(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// Something that should not happen (a stored value that no longer parses).
    #[error("internal error: {0}")]
    Internal(String),
}

impl UsageError {
    /// An INVALID_ARGUMENT naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = UsageError> = std::result::Result<T, E>;

impl From<esim_runtime::api::FieldViolation> for UsageError {
    fn from(violation: esim_runtime::api::FieldViolation) -> Self {
        Self::invalid(violation.field, violation.message)
    }
}

impl From<UsageError> for Status {
    fn from(err: UsageError) -> Self {
        match err {
            UsageError::InvalidArgument { field, message } => {
                esim_runtime::status::invalid_argument(&field, message)
            }
            UsageError::NotFound(what) => Status::new(Code::NotFound, format!("{what} not found")),
            UsageError::FailedPrecondition(msg) => Status::new(Code::FailedPrecondition, msg),
            UsageError::Unavailable(msg) => Status::new(Code::Unavailable, msg),
            UsageError::Database(err) => {
                // Details stay in the log: they may name tables or connection targets.
                tracing::error!(error = %err, "usage database error");
                Status::new(Code::Unavailable, "the usage database is unavailable")
            }
            UsageError::Internal(msg) => {
                tracing::error!(error = %msg, "usage internal error");
                Status::new(Code::Internal, "internal error")
            }
        }
    }
}

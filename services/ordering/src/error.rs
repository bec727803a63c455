//! The one error type of the ordering service, mapped once to `tonic::Status`.

use tonic::{Code, Status};

/// Everything an ordering call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum OrderingError {
    /// A request field is invalid; nothing was changed.
    #[error("{field}: {message}")]
    InvalidArgument {
        /// The request field path (`order.product`, `order.cycle_count`, ...).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The named resource does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A request id was reused for a different request.
    #[error("{0}")]
    AlreadyExists(String),
    /// The resource is not in a state that allows the call.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A peer service or upstream is unavailable; nothing was changed.
    #[error("{0}")]
    Unavailable(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// Something that should not happen (a stored value that no longer parses).
    #[error("internal error: {0}")]
    Internal(String),
}

impl OrderingError {
    /// An INVALID_ARGUMENT naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Whether the database could not take the call right now (it may succeed if sent again).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Database(err) if esim_runtime::db::is_transient(err))
    }
}

/// The crate's result type.
pub type Result<T, E = OrderingError> = std::result::Result<T, E>;

impl From<esim_runtime::api::FieldViolation> for OrderingError {
    fn from(violation: esim_runtime::api::FieldViolation) -> Self {
        Self::invalid(violation.field, violation.message)
    }
}

impl From<OrderingError> for Status {
    fn from(err: OrderingError) -> Self {
        match err {
            OrderingError::InvalidArgument { field, message } => {
                esim_runtime::status::invalid_argument(&field, message)
            }
            OrderingError::NotFound(what) => Status::new(Code::NotFound, format!("{what} not found")),
            OrderingError::AlreadyExists(msg) => Status::new(Code::AlreadyExists, msg),
            OrderingError::FailedPrecondition(msg) => Status::new(Code::FailedPrecondition, msg),
            OrderingError::Unavailable(msg) => Status::new(Code::Unavailable, msg),
            OrderingError::Database(err) => {
                // Details stay in the log: they may name tables or connection targets.
                tracing::error!(error = %err, "ordering database error");
                Status::new(Code::Unavailable, "the ordering database is unavailable")
            }
            OrderingError::Internal(msg) => {
                tracing::error!(error = %msg, "ordering internal error");
                Status::new(Code::Internal, "internal error")
            }
        }
    }
}

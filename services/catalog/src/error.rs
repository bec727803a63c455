//! The one error type of the catalog, mapped once to `tonic::Status`.

use tonic::{Code, Status};

/// Everything a catalog call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A request field is invalid; nothing was changed.
    #[error("{field}: {message}")]
    InvalidArgument {
        /// The request field path (`page_token`, `max_retail_price.units`, ...).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The named resource does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The resource already exists, or a request id was reused for another request.
    #[error("{0}")]
    AlreadyExists(String),
    /// An etag did not match: someone changed the resource in between.
    #[error("{0}")]
    Aborted(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// Something that should not happen (a stored value that no longer parses).
    #[error("internal error: {0}")]
    Internal(String),
}

impl CatalogError {
    /// An INVALID_ARGUMENT naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<esim_runtime::api::FieldViolation> for CatalogError {
    fn from(violation: esim_runtime::api::FieldViolation) -> Self {
        Self::InvalidArgument {
            field: violation.field,
            message: violation.message,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

impl From<CatalogError> for Status {
    fn from(err: CatalogError) -> Self {
        match err {
            CatalogError::InvalidArgument { field, message } => {
                esim_runtime::status::invalid_argument(&field, message)
            }
            CatalogError::NotFound(what) => Status::new(Code::NotFound, format!("{what} not found")),
            CatalogError::AlreadyExists(msg) => Status::new(Code::AlreadyExists, msg),
            CatalogError::Aborted(msg) => Status::new(Code::Aborted, msg),
            CatalogError::Database(err) => {
                // Details stay in the log: they may name tables or connection targets.
                tracing::error!(error = %err, "catalog database error");
                Status::new(Code::Unavailable, "the catalog database is unavailable")
            }
            CatalogError::Internal(msg) => {
                tracing::error!(error = %msg, "catalog internal error");
                Status::new(Code::Internal, "internal error")
            }
        }
    }
}

//! Building `tonic::Status` values with rich error details (`google.rpc.BadRequest` field
//! violations, retry info), so callers learn which field was wrong.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Longest description carried in a status. Descriptions often quote the refused value, and an
/// unbounded one (a 20 kB name) would make the response headers larger than HTTP/2 peers
/// accept (16 KiB by default): the call, and others on the same connection, would fail at the
/// transport instead of answering INVALID_ARGUMENT.
const MAX_DESCRIPTION_CHARS: usize = 200;

/// INVALID_ARGUMENT naming the offending field (`field` is the request field path, e.g.
/// `order.cycle_count`); the description is cut to 200 characters.
pub fn invalid_argument(field: &str, description: impl Into<String>) -> Status {
    let description = bounded(description.into());
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {description}"),
        ErrorDetails::with_bad_request_violation(field, description),
    )
}

/// RESOURCE_EXHAUSTED telling the caller when to retry.
pub fn resource_exhausted(message: impl Into<String>, retry_after: Duration) -> Status {
    Status::with_error_details(
        Code::ResourceExhausted,
        message,
        ErrorDetails::with_retry_info(Some(retry_after)),
    )
}

fn bounded(text: String) -> String {
    match text.char_indices().nth(MAX_DESCRIPTION_CHARS) {
        None => text,
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_the_field_violation() {
        let status = invalid_argument("page_size", "must be between 1 and 1000");
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad_request = details.bad_request().expect("bad request details");
        assert_eq!(bad_request.field_violations[0].field, "page_size");
    }

    #[test]
    fn a_quoted_value_cannot_make_the_status_unbounded() {
        let status = invalid_argument("name", format!("{:?} is not an order name", "é".repeat(20_000)));
        assert!(
            status.message().chars().count() <= MAX_DESCRIPTION_CHARS + 10,
            "{}",
            status.message().len()
        );
        assert!(status.message().ends_with('…'));
        let details = status.get_error_details();
        let violation = &details
            .bad_request()
            .expect("bad request details")
            .field_violations[0];
        assert!(violation.description.chars().count() <= MAX_DESCRIPTION_CHARS + 1);
    }
}

use thiserror::Error;

/// Why a value is not a valid domain value. The message says what is wrong, never the
/// full value of a credential.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    /// ICCID not of the form `89` + 16..=18 digits (after trimming and removing `F` filler).
    #[error("invalid ICCID: {0}")]
    Iccid(String),
    /// EID not 32 digits or failing the mod-97 check.
    #[error("invalid EID: {0}")]
    Eid(String),
    /// Not an SGP.22 activation code. The message never contains the matching id.
    #[error("invalid activation code: {0}")]
    ActivationCode(String),
    /// Not an ISO 3166-1 alpha-2 country code.
    #[error("invalid country code: {0}")]
    CountryCode(String),
    /// Not a 3-digit mobile country code.
    #[error("invalid MCC: {0}")]
    Mcc(String),
    /// Not a 3-letter upper-case ISO 4217 currency code.
    #[error("invalid currency code: {0}")]
    Currency(String),
    /// Not an exact decimal amount.
    #[error("invalid amount: {0}")]
    Amount(String),
    /// Free text breaking its [`crate::TextRule`]; the message is what to fix.
    #[error("{0}")]
    Text(String),
}

/// Shortens untrusted input echoed in an error message.
pub(crate) fn excerpt(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head:?}…")
    }
}

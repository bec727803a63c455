//! Credentials at rest (customers' FMS password hashes, activation codes until provisioning has
//! them), sealed with the suite's key ring (`esim_runtime::crypto`) under
//! `ORDERING_CREDENTIAL_KEY` (`_KEYS` for retired keys), bound to the row they belong to.

use esim_runtime::{Env, crypto::KeyRing};

use crate::error::{OrderingError, Result};

/// The public label of the development key, used only with SQLite (a local run); PostgreSQL
/// refuses to start without a configured key.
pub const DEV_KEY_LABEL: &str = "esim-ordering development credential key (public, not secret)";

/// Encrypts and decrypts credentials.
#[derive(Debug, Clone)]
pub struct CredentialCipher(KeyRing);

impl CredentialCipher {
    /// A cipher under `key`.
    pub fn new(key: [u8; 32]) -> Self {
        Self(KeyRing::new(key, []))
    }

    /// From `ORDERING_CREDENTIAL_KEY` (or `_FILE`; `ORDERING_CREDENTIAL_KEYS` for retired keys).
    /// Missing: the development key on SQLite, an error on any other database.
    pub fn from_env(env: &Env, database_url: &str) -> Result<Self> {
        KeyRing::from_env(env, "CREDENTIAL_KEY", database_url, DEV_KEY_LABEL)
            .map(Self)
            .map_err(|err| OrderingError::Internal(err.to_string()))
    }

    /// Encrypts `plain` bound to `aad`.
    pub fn encrypt(&self, plain: &str, aad: &str) -> Result<String> {
        Ok(self.0.seal(plain.as_bytes(), aad))
    }

    /// Decrypts a value written by [`CredentialCipher::encrypt`] with the same `aad`.
    pub fn decrypt(&self, stored: &str, aad: &str) -> Result<String> {
        let bad = |why: String| OrderingError::Internal(format!("stored credential: {why}"));
        let plain = self.0.open(stored, aad).map_err(|err| bad(err.to_string()))?;
        String::from_utf8(plain).map_err(|_| bad("not UTF-8".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_bound_to_the_row() {
        let c = CredentialCipher::new([7; 32]);
        let s = c.encrypt("5f4dcc3b5aa765d61d8327deb882cf99", "orders/a").unwrap();
        assert!(!s.contains("5f4dcc3b"));
        assert_eq!(
            c.decrypt(&s, "orders/a").unwrap(),
            "5f4dcc3b5aa765d61d8327deb882cf99"
        );
        assert!(c.decrypt(&s, "orders/b").is_err());
        assert!(CredentialCipher::new([8; 32]).decrypt(&s, "orders/a").is_err());
    }

    #[test]
    fn postgres_needs_a_key() {
        let env = Env::from_vars("ORDERING", Vec::<(String, String)>::new());
        assert!(CredentialCipher::from_env(&env, "sqlite://x.db").is_ok());
        assert!(CredentialCipher::from_env(&env, "postgres://h/db").is_err());
        let env = Env::from_vars("ORDERING", [("ORDERING_CREDENTIAL_KEY", "short")]);
        assert!(CredentialCipher::from_env(&env, "postgres://h/db").is_err());
    }
}

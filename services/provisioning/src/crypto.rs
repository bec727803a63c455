//! Activation codes at rest, sealed with the suite's key ring (`esim_runtime::crypto`): the
//! eSIM's id is the associated data, so a ciphertext copied onto another row does not decrypt.

use esim_domain::ActivationCode;
use esim_runtime::crypto::KeyRing;

use crate::error::{ProvisioningError, Result};

/// The local development key's public label: used only when no key is configured and the
/// database is SQLite (a laptop run); PostgreSQL refuses to start without a configured key.
pub const DEV_KEY_LABEL: &str = "esim-suite local development activation-code key (not secret)";

/// Encrypts and decrypts activation codes.
#[derive(Debug, Clone)]
pub struct CodeCipher(KeyRing);

impl From<KeyRing> for CodeCipher {
    fn from(ring: KeyRing) -> Self {
        Self(ring)
    }
}

impl CodeCipher {
    /// A ring whose current key is `current`, also able to decrypt with `old`.
    pub fn new(current: [u8; 32], old: impl IntoIterator<Item = [u8; 32]>) -> Self {
        Self(KeyRing::new(current, old))
    }

    /// The documented development key (see [`DEV_KEY_LABEL`]).
    pub fn development() -> Self {
        Self(KeyRing::development(DEV_KEY_LABEL))
    }

    /// The id of the key that encrypts.
    pub fn current_key_id(&self) -> &str {
        self.0.current_key_id()
    }

    /// Encrypts `code` bound to `aad` (the eSIM id).
    pub fn encrypt(&self, code: &ActivationCode, aad: &str) -> Result<String> {
        Ok(self.0.seal(code.expose().as_bytes(), aad))
    }

    /// Decrypts a stored value written by [`CodeCipher::encrypt`] with the same `aad`.
    pub fn decrypt(&self, stored: &str, aad: &str) -> Result<ActivationCode> {
        let bad = |why: String| ProvisioningError::Internal(format!("stored activation code: {why}"));
        let plain = self.0.open(stored, aad).map_err(|err| bad(err.to_string()))?;
        let text = String::from_utf8(plain).map_err(|_| bad("not UTF-8".into()))?;
        text.parse().map_err(|_| bad("not an activation code".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_codes_round_trip_without_plain_text() {
        let ring = CodeCipher::new([7; 32], []);
        let code: ActivationCode = "LPA:1$rsp.example.com$ABC-123".parse().unwrap();
        let stored = ring.encrypt(&code, "esims/a").unwrap();
        assert!(!stored.contains("ABC-123"));
        assert_eq!(ring.decrypt(&stored, "esims/a").unwrap().expose(), code.expose());
        assert!(ring.decrypt(&stored, "esims/b").is_err());
    }
}

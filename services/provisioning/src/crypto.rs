//! Activation codes at rest: XChaCha20-Poly1305 (RustCrypto) under a 32-byte key, a random
//! 24-byte nonce per value (large enough that random nonces never repeat in practice), and the
//! eSIM's id as associated data, so a ciphertext copied onto another row does not decrypt.
//!
//! Stored form: `v1.<key id>.<base64(nonce || ciphertext)>`. The key id is a fingerprint of the
//! key (the first 8 bytes of a SHA-256 over a label and the key, in hex), so keys rotate by
//! configuration alone: the current key encrypts, every configured key can decrypt.

use std::collections::HashMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use esim_domain::ActivationCode;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::{ProvisioningError, Result};

const VERSION: &str = "v1";
const NONCE_LEN: usize = 24;

/// The local development key: derived from a public text, so it protects nothing. Used only
/// when no key is configured and the database is SQLite (a laptop run); PostgreSQL refuses to
/// start without a configured key.
pub const DEV_KEY_LABEL: &str = "esim-suite local development activation-code key (not secret)";

/// A key ring: the current key (encrypts) and older keys (decrypt only).
#[derive(Clone)]
pub struct CodeCipher {
    current: String,
    keys: HashMap<String, XChaCha20Poly1305>,
}

impl fmt::Debug for CodeCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key ids only: they are fingerprints, not keys.
        f.debug_struct("CodeCipher")
            .field("current", &self.current)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why a key setting is unusable (the message never contains the key).
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct KeyError {
    /// The setting.
    pub setting: String,
    /// What is wrong.
    pub reason: String,
}

fn key_id(key: &[u8; 32]) -> String {
    let digest = Sha256::new()
        .chain_update(b"esim-provisioning activation-code key id\0")
        .chain_update(key)
        .finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a base64 (standard or URL-safe, padded or not) 32-byte key.
pub fn parse_key(setting: &str, text: &str) -> Result<[u8; 32], KeyError> {
    let text = text.trim();
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let bytes = engines
        .iter()
        .find_map(|e| e.decode(text).ok())
        .ok_or_else(|| KeyError {
            setting: setting.to_owned(),
            reason: "not base64".into(),
        })?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError {
        setting: setting.to_owned(),
        reason: format!("expected 32 bytes, got {}", bytes.len()),
    })
}

impl CodeCipher {
    /// A ring whose current key is `current`, also able to decrypt with `old`.
    pub fn new(current: [u8; 32], old: impl IntoIterator<Item = [u8; 32]>) -> Self {
        let mut keys = HashMap::new();
        for key in old.into_iter().chain([current]) {
            keys.insert(key_id(&key), XChaCha20Poly1305::new(&key.into()));
        }
        Self {
            current: key_id(&current),
            keys,
        }
    }

    /// The documented development key (see [`DEV_KEY_LABEL`]).
    pub fn development() -> Self {
        Self::new(Sha256::digest(DEV_KEY_LABEL.as_bytes()).into(), [])
    }

    /// The id of the key that encrypts.
    pub fn current_key_id(&self) -> &str {
        &self.current
    }

    /// Encrypts `code` bound to `aad` (the eSIM id).
    pub fn encrypt(&self, code: &ActivationCode, aad: &str) -> Result<String> {
        let cipher = self
            .keys
            .get(&self.current)
            .ok_or_else(|| ProvisioningError::Internal("the current key is missing".into()))?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: code.expose().as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| ProvisioningError::Internal("activation code encryption failed".into()))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        Ok(format!("{VERSION}.{}.{}", self.current, B64.encode(blob)))
    }

    /// Decrypts a stored value written by [`CodeCipher::encrypt`] with the same `aad`.
    pub fn decrypt(&self, stored: &str, aad: &str) -> Result<ActivationCode> {
        let bad = |why: &str| ProvisioningError::Internal(format!("stored activation code: {why}"));
        let mut parts = stored.splitn(3, '.');
        let (Some(VERSION), Some(kid), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("unknown format"));
        };
        let cipher = self
            .keys
            .get(kid)
            .ok_or_else(|| bad(&format!("encrypted with key {kid}, which is not configured")))?;
        let blob = B64.decode(body).map_err(|_| bad("not base64"))?;
        if blob.len() <= NONCE_LEN {
            return Err(bad("too short"));
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| bad("bad nonce"))?;
        let plain = cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| bad("authentication failed"))?;
        let text = String::from_utf8(plain).map_err(|_| bad("not UTF-8"))?;
        text.parse().map_err(|_| bad("not an activation code"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE: &str = "LPA:1$rsp.example.com$ABC-123";

    #[test]
    fn round_trips_and_binds_the_row() {
        let ring = CodeCipher::new([7; 32], []);
        let code: ActivationCode = CODE.parse().unwrap();
        let stored = ring.encrypt(&code, "esims/a").unwrap();
        assert!(!stored.contains("ABC-123"));
        assert!(stored.starts_with(&format!("v1.{}.", ring.current_key_id())));
        assert_eq!(ring.decrypt(&stored, "esims/a").unwrap().expose(), CODE);
        assert!(ring.decrypt(&stored, "esims/b").is_err(), "aad binds the row");
        // Two encryptions differ (random nonce).
        assert_ne!(stored, ring.encrypt(&code, "esims/a").unwrap());
    }

    #[test]
    fn rotated_keys_still_decrypt() {
        let code: ActivationCode = CODE.parse().unwrap();
        let old = CodeCipher::new([1; 32], []);
        let stored = old.encrypt(&code, "x").unwrap();
        let rotated = CodeCipher::new([2; 32], [[1; 32]]);
        assert_ne!(rotated.current_key_id(), old.current_key_id());
        assert_eq!(rotated.decrypt(&stored, "x").unwrap().expose(), CODE);
        let without_old = CodeCipher::new([2; 32], []);
        let err = without_old.decrypt(&stored, "x").unwrap_err().to_string();
        assert!(err.contains(old.current_key_id()), "{err}");
    }

    #[test]
    fn keys_parse_from_base64_only_at_32_bytes() {
        let key = B64.encode([9u8; 32]);
        assert_eq!(parse_key("K", &key).unwrap(), [9; 32]);
        assert!(
            parse_key("K", &B64.encode([9u8; 16]))
                .unwrap_err()
                .to_string()
                .contains("32")
        );
        assert!(parse_key("K", "%%%").is_err());
        assert!(!format!("{:?}", CodeCipher::new([9; 32], [])).contains(&key));
    }
}

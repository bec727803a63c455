//! Secrets at rest (activation codes, customers' upstream passwords): XChaCha20-Poly1305
//! (RustCrypto) under a 32-byte key, a random 24-byte nonce per value (large enough that random
//! nonces never repeat in practice), and associated data naming the row, so a ciphertext
//! copied onto another row does not decrypt.
//!
//! Stored form: `v1.<key id>.<base64(nonce || ciphertext)>`. The key id is a fingerprint of the
//! key, so keys rotate by configuration alone: the current key encrypts, every configured key
//! decrypts.

use std::{collections::HashMap, fmt};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, KeyInit, Payload},
};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, Env};

const VERSION: &str = "v1";
const NONCE_LEN: usize = 24;

/// Why a key setting is unusable (the message never contains the key).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key setting is not base64 of 32 bytes.
    #[error("{setting}: {reason}")]
    Invalid {
        /// The setting.
        setting: String,
        /// What is wrong.
        reason: String,
    },
    /// A key setting could not be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No key is configured and the database is not SQLite.
    #[error(
        "{0} must be set (base64 of 32 random bytes, e.g. `openssl rand -base64 32`): the \
         development key is only used with SQLite"
    )]
    Missing(String),
}

/// A stored value could not be decrypted.
#[derive(Debug, thiserror::Error)]
#[error("sealed value: {0}")]
pub struct OpenError(String);

/// A key ring: the current key (encrypts) and retired keys (decrypt only).
#[derive(Clone)]
pub struct KeyRing {
    current: String,
    keys: HashMap<String, XChaCha20Poly1305>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key ids only: they are fingerprints, not keys.
        f.debug_struct("KeyRing")
            .field("current", &self.current)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn key_id(key: &[u8; 32]) -> String {
    let digest = Sha256::new()
        .chain_update(b"esim-suite key id\0")
        .chain_update(key)
        .finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a base64 (standard or URL-safe, padded or not) 32-byte key.
pub fn parse_key(setting: &str, text: &str) -> Result<[u8; 32], KeyError> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = text.trim();
    let invalid = |reason: String| KeyError::Invalid {
        setting: setting.to_owned(),
        reason,
    };
    let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .ok_or_else(|| invalid("not base64".into()))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| invalid(format!("expected 32 bytes, got {}", bytes.len())))
}

impl KeyRing {
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

    /// A development key derived from the public `label`: it protects nothing, and is used
    /// only for a local SQLite run.
    pub fn development(label: &str) -> Self {
        Self::new(Sha256::digest(label.as_bytes()).into(), [])
    }

    /// The ring configured under `env`: `<NAME>` (or `_FILE`) encrypts, `<NAME>S`
    /// (comma-separated, or `_FILE`) holds retired keys that still decrypt. Without a key, a
    /// SQLite database (a local run) gets the development key of `dev_label` and a warning;
    /// any other database refuses to start.
    pub fn from_env(env: &Env, name: &str, database_url: &str, dev_label: &str) -> Result<Self, KeyError> {
        let setting = env.key(name);
        let Some(current) = env.secret(name)? else {
            if database_url.starts_with("sqlite:") {
                tracing::warn!(%setting, "no key configured: using the public development key (SQLite only)");
                return Ok(Self::development(dev_label));
            }
            return Err(KeyError::Missing(setting));
        };
        let current = parse_key(&setting, &current)?;
        let retired = format!("{name}S");
        let old = env
            .secret(&retired)?
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| parse_key(&env.key(&retired), k))
            .collect::<Result<Vec<_>, _>>()?;
        let ring = Self::new(current, old);
        tracing::info!(%setting, key_id = ring.current_key_id(), "key loaded");
        Ok(ring)
    }

    /// The id of the key that encrypts.
    pub fn current_key_id(&self) -> &str {
        &self.current
    }

    /// Encrypts `plain`, bound to `aad` (the row it belongs to).
    pub fn seal(&self, plain: &[u8], aad: &str) -> String {
        let cipher = &self.keys[&self.current];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        // Encryption with a valid key and nonce cannot fail; an empty ciphertext would not
        // open, so nothing is lost silently.
        let sealed = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: aad.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!("{VERSION}.{}.{}", self.current, B64.encode(blob))
    }

    /// Decrypts a value written by [`KeyRing::seal`] with the same `aad`.
    pub fn open(&self, stored: &str, aad: &str) -> Result<Vec<u8>, OpenError> {
        let bad = |why: &str| OpenError(why.to_owned());
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
        cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| bad("authentication failed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_binds_the_row() {
        let ring = KeyRing::new([7; 32], []);
        let stored = ring.seal(b"ABC-123", "esims/a");
        assert!(!stored.contains("ABC-123"));
        assert!(stored.starts_with(&format!("v1.{}.", ring.current_key_id())));
        assert_eq!(ring.open(&stored, "esims/a").unwrap(), b"ABC-123");
        assert!(ring.open(&stored, "esims/b").is_err(), "aad binds the row");
        assert_ne!(stored, ring.seal(b"ABC-123", "esims/a"), "random nonce");
    }

    #[test]
    fn rotated_keys_still_decrypt() {
        let old = KeyRing::new([1; 32], []);
        let stored = old.seal(b"x", "r");
        let rotated = KeyRing::new([2; 32], [[1; 32]]);
        assert_eq!(rotated.open(&stored, "r").unwrap(), b"x");
        let err = KeyRing::new([2; 32], [])
            .open(&stored, "r")
            .unwrap_err()
            .to_string();
        assert!(err.contains(old.current_key_id()), "{err}");
    }

    #[test]
    fn keys_come_from_the_environment() {
        let none = Env::from_vars("SVC", Vec::<(String, String)>::new());
        assert!(KeyRing::from_env(&none, "KEY", "sqlite://data/x.db", "dev").is_ok());
        let err = KeyRing::from_env(&none, "KEY", "postgres://db/x", "dev")
            .unwrap_err()
            .to_string();
        assert!(err.contains("SVC_KEY"), "{err}");

        let (key, old) = (B64.encode([3u8; 32]), B64.encode([4u8; 32]));
        let env = Env::from_vars("SVC", [("SVC_KEY", key.as_str()), ("SVC_KEYS", old.as_str())]);
        let ring = KeyRing::from_env(&env, "KEY", "postgres://db/x", "dev").unwrap();
        assert_eq!(ring.current_key_id(), KeyRing::new([3; 32], []).current_key_id());
        assert!(ring.open(&KeyRing::new([4; 32], []).seal(b"v", "r"), "r").is_ok());
        assert!(!format!("{ring:?}").contains(&key));

        let short = Env::from_vars("SVC", [("SVC_KEY", "c2hvcnQ=")]);
        let err = KeyRing::from_env(&short, "KEY", "sqlite://x", "dev")
            .unwrap_err()
            .to_string();
        assert!(err.contains("32 bytes") && !err.contains("c2hvcnQ"), "{err}");
        assert!(parse_key("K", "%%%").is_err());
    }
}

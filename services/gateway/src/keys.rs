//! API key material: the key format, its hash, its public prefix, and reading it from the
//! `authorization` header.
//!
//! A key is `esk_` followed by base64url (no padding) of 32 bytes from the operating system's
//! random source: 256 bits nobody can guess, in characters that survive shells, headers and
//! YAML unquoted. Only its SHA-256 is stored. A fast hash is right here (unlike for passwords,
//! where a slow one such as argon2 is needed): the input already has full entropy, so there is
//! nothing to brute-force, and the gateway hashes the presented key on every call.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::TryRngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What every key starts with.
pub const KEY_PREFIX: &str = "esk_";

/// How many leading characters of a key are shown (`esk_7Fq2`): not secret.
pub const SHOWN_PREFIX_LEN: usize = 8;

/// The shortest key accepted anywhere (the bootstrap key may be longer than generated ones).
pub const MIN_KEY_LEN: usize = 32;

/// The SHA-256 of a key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyHash([u8; 32]);

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A hash of a key is not the key, but there is no reason to spread it either.
        f.write_str("KeyHash(..)")
    }
}

impl KeyHash {
    /// The hash of `key`.
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// The stored form: 64 lowercase hex digits.
    pub fn to_hex(self) -> String {
        hex(&self.0)
    }

    /// The hash of a stored form.
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(bytes))
    }

    /// The first 8 bytes, to index a table by: a fragment of a hash tells nobody anything, so
    /// looking it up need not be constant time; the full comparison is ([`Self::matches`]).
    pub fn bucket(self) -> u64 {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(head)
    }

    /// Constant-time equality.
    pub fn matches(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// `bytes` as lowercase hex digits.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// A new key, its hash and its shown prefix. The key itself goes to the caller once and is
/// dropped; `Debug` does not show it.
pub struct NewKey {
    /// The key in plain text.
    pub key: String,
    /// Its hash, to store.
    pub hash: KeyHash,
    /// Its shown prefix, to store.
    pub prefix: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Why a new key could not be made.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed: {0}")]
pub struct RandomSourceError(String);

/// A fresh random key.
pub fn generate() -> Result<NewKey, RandomSourceError> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|err| RandomSourceError(err.to_string()))?;
    let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    Ok(NewKey {
        hash: KeyHash::of(&key),
        prefix: shown_prefix(&key).to_owned(),
        key,
    })
}

/// The part of a key that may be shown and logged.
pub fn shown_prefix(key: &str) -> &str {
    key.get(..SHOWN_PREFIX_LEN).unwrap_or(key)
}

/// Whether `key` has the shape of a key: `esk_` and at least [`MIN_KEY_LEN`] characters of the
/// base64url alphabet in all.
pub fn well_formed(key: &str) -> bool {
    key.len() >= MIN_KEY_LEN
        && key.starts_with(KEY_PREFIX)
        && key[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The key of an `authorization` header value, `Bearer <key>` (the scheme in any case, RFC
/// 9110), if it has the shape of a key.
pub fn from_bearer(header: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(header).ok()?;
    let (scheme, key) = text.trim().split_once(' ')?;
    let key = key.trim_start();
    (scheme.eq_ignore_ascii_case("bearer") && well_formed(key)).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a.key, b.key);
        assert_eq!(a.key.len(), KEY_PREFIX.len() + 43);
        assert!(well_formed(&a.key), "{}", a.prefix);
        assert_eq!(a.prefix.len(), SHOWN_PREFIX_LEN);
        assert!(a.key.starts_with(&a.prefix));
        assert!(a.hash.matches(&KeyHash::of(&a.key)));
        assert!(!a.hash.matches(&b.hash));
        assert_eq!(KeyHash::from_hex(&a.hash.to_hex()), Some(a.hash));
        assert_eq!(KeyHash::from_hex("zz"), None);
    }

    #[test]
    fn bearer_headers_are_read_leniently_but_keys_strictly() {
        let key = generate().unwrap().key;
        for header in [
            format!("Bearer {key}"),
            format!("bearer {key}"),
            format!("BEARER  {key} "),
        ] {
            assert_eq!(from_bearer(header.as_bytes()), Some(key.as_str()), "{header}");
        }
        for header in [
            key.clone(),
            format!("Basic {key}"),
            "Bearer ".to_owned(),
            "Bearer esk_short".to_owned(),
            format!("Bearer {}", key.replace("esk_", "sk_")),
            format!("Bearer {key}!"),
        ] {
            assert_eq!(from_bearer(header.as_bytes()), None, "{header}");
        }
        assert_eq!(from_bearer(b"Bearer \xff\xfe"), None);
    }
}

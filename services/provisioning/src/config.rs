//! The provisioning service's own settings (`PROVISIONING_*`), beyond the common ones.

use std::time::Duration;

use esim_runtime::config::{ConfigError, Env};

use esim_runtime::crypto::{KeyError, KeyRing};

use crate::crypto::{self, CodeCipher};

/// Tunables of the SFT provision flow.
#[derive(Debug, Clone)]
pub struct Settings {
    /// SIMs asked of `fetchSIM` per page while looking for one to claim
    /// (`PROVISIONING_SFT_FETCH_PAGE_SIZE`, default 100).
    pub fetch_page_size: u32,
    /// Attempts of `SubscribeAddon` during a provision, the first included
    /// (`PROVISIONING_SUBSCRIBE_ATTEMPTS`, default 4).
    pub subscribe_attempts: usize,
    /// First back-off delay between them, doubled each time and jittered
    /// (`PROVISIONING_SUBSCRIBE_RETRY_MIN_DELAY_MS`, default 500).
    pub subscribe_min_delay: Duration,
    /// Largest back-off delay (`PROVISIONING_SUBSCRIBE_RETRY_MAX_DELAY_MS`, default 5000).
    pub subscribe_max_delay: Duration,
    /// How long one call owns an unfinished provision before a retry with the same request id
    /// may resume it (`PROVISIONING_PROVISION_LEASE_SECS`, default 600: longer than an SFT
    /// lifecycle call may take).
    pub provision_lease: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            fetch_page_size: 100,
            subscribe_attempts: 4,
            subscribe_min_delay: Duration::from_millis(500),
            subscribe_max_delay: Duration::from_secs(5),
            provision_lease: Duration::from_secs(600),
        }
    }
}

impl Settings {
    /// Reads the settings under the service's prefix.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        let ms = |name: &str, default: Duration| -> Result<Duration, ConfigError> {
            let default_ms = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
            env.parse_or(name, default_ms).map(Duration::from_millis)
        };
        Ok(Self {
            fetch_page_size: env
                .parse_or("SFT_FETCH_PAGE_SIZE", d.fetch_page_size)?
                .clamp(1, 500),
            subscribe_attempts: env.parse_or("SUBSCRIBE_ATTEMPTS", d.subscribe_attempts)?.max(1),
            subscribe_min_delay: ms("SUBSCRIBE_RETRY_MIN_DELAY_MS", d.subscribe_min_delay)?,
            subscribe_max_delay: ms("SUBSCRIBE_RETRY_MAX_DELAY_MS", d.subscribe_max_delay)?,
            provision_lease: env.secs_or("PROVISION_LEASE_SECS", d.provision_lease)?,
        })
    }
}

/// The activation-code key ring: `PROVISIONING_ACTIVATION_CODE_KEY` (or `_FILE`) encrypts,
/// `PROVISIONING_ACTIVATION_CODE_KEYS` (comma-separated, or `_FILE`) holds retired keys that
/// still decrypt. Without a key, a SQLite database (a local run) uses the documented
/// development key and a PostgreSQL one refuses to start.
pub fn cipher_from_env(env: &Env, database_url: &str) -> Result<CodeCipher, KeyError> {
    KeyRing::from_env(env, "ACTIVATION_CODE_KEY", database_url, crypto::DEV_KEY_LABEL).map(CodeCipher::from)
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    #[test]
    fn postgres_needs_a_key_and_sqlite_has_a_dev_default() {
        let none = Env::from_vars("PROVISIONING", Vec::<(String, String)>::new());
        assert!(cipher_from_env(&none, "sqlite://data/p.db?mode=rwc").is_ok());
        let err = cipher_from_env(&none, "postgres://db/p").unwrap_err().to_string();
        assert!(err.contains("PROVISIONING_ACTIVATION_CODE_KEY"), "{err}");

        let key = base64::engine::general_purpose::STANDARD.encode([3u8; 32]);
        let old = base64::engine::general_purpose::STANDARD.encode([4u8; 32]);
        let env = Env::from_vars(
            "PROVISIONING",
            [
                ("PROVISIONING_ACTIVATION_CODE_KEY", key.as_str()),
                ("PROVISIONING_ACTIVATION_CODE_KEYS", old.as_str()),
            ],
        );
        let ring = cipher_from_env(&env, "postgres://db/p").unwrap();
        assert_eq!(
            ring.current_key_id(),
            CodeCipher::new([3; 32], []).current_key_id()
        );
        let code = "LPA:1$a.example$X".parse().unwrap();
        let by_old = CodeCipher::new([4; 32], []).encrypt(&code, "id").unwrap();
        assert!(ring.decrypt(&by_old, "id").is_ok());

        let bad = Env::from_vars("PROVISIONING", [("PROVISIONING_ACTIVATION_CODE_KEY", "c2hvcnQ=")]);
        let err = cipher_from_env(&bad, "sqlite://x").unwrap_err().to_string();
        assert!(err.contains("32 bytes") && !err.contains("c2hvcnQ"), "{err}");
    }

    #[test]
    fn settings_defaults_and_overrides() {
        let env = Env::from_vars(
            "PROVISIONING",
            [
                ("PROVISIONING_SUBSCRIBE_ATTEMPTS", "2"),
                ("PROVISIONING_SFT_FETCH_PAGE_SIZE", "9999"),
            ],
        );
        let s = Settings::from_env(&env).unwrap();
        assert_eq!(s.subscribe_attempts, 2);
        assert_eq!(s.fetch_page_size, 500);
        assert_eq!(s.provision_lease, Duration::from_secs(600));
    }
}

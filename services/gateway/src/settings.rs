//! The gateway's authentication settings (`GATEWAY_*`, besides the common ones) and starting
//! authentication: the bootstrap key, the first cache load, the refresher.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `KEY_REFRESH_SECS` | `2` | how often the active keys are re-read, i.e. how soon another replica's (or `esim-keys`') revocation or change takes effect here |
//! | `RATE_LIMIT_READ` | `1000/2000` | per key: READ calls per second / burst, unless the key has its own limit |
//! | `RATE_LIMIT_ORDER` | `100/200` | the same for ORDER calls |
//! | `RATE_LIMIT_ADMIN` | `10/20` | the same for ADMIN calls |
//! | `BOOTSTRAP_KEY` (secret, `_FILE`) | unset | a key (`esk_` + at least 28 base64url characters) created at start, with every scope, as `bootstrap`, unless a key with its hash exists (a revoked one stays revoked) |

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use esim_runtime::{BoxError, Env, config::ConfigError};
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::cache::KeyCache;
use crate::keys;
use crate::ratelimit::ScopeLimits;
use crate::store::{self, Bootstrap};

/// Default of `GATEWAY_KEY_REFRESH_SECS`.
pub const DEFAULT_KEY_REFRESH: Duration = Duration::from_secs(2);

/// How the gateway authenticates and limits callers.
#[derive(Clone)]
pub struct AuthSettings {
    /// How often the active keys are re-read.
    pub key_refresh: Duration,
    /// Per-scope rate limits of keys without their own.
    pub rate_limits: ScopeLimits,
    /// The key to make sure of at start.
    pub bootstrap_key: Option<String>,
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSettings")
            .field("key_refresh", &self.key_refresh)
            .field("rate_limits", &self.rate_limits)
            .field(
                "bootstrap_key",
                &self.bootstrap_key.as_deref().map(keys::shown_prefix),
            )
            .finish()
    }
}

impl AuthSettings {
    /// Reads the settings; a bootstrap key that does not look like a key is an error.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let bootstrap_key = env.secret("BOOTSTRAP_KEY")?;
        if let Some(key) = &bootstrap_key
            && !keys::well_formed(key)
        {
            return Err(ConfigError::Invalid {
                key: env.key("BOOTSTRAP_KEY"),
                // Never echo a secret, even a malformed one.
                value: "(hidden)".into(),
                reason: format!(
                    "must look like an API key: `{}` and at least {} characters of A-Z a-z 0-9 - _ in all, \
                     e.g. `esk_$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=')`",
                    keys::KEY_PREFIX,
                    keys::MIN_KEY_LEN
                ),
            });
        }
        Ok(Self {
            key_refresh: env.secs_or("KEY_REFRESH_SECS", DEFAULT_KEY_REFRESH)?,
            rate_limits: ScopeLimits::from_env(env)?,
            bootstrap_key,
        })
    }

    /// Starts authentication over a migrated `db`: makes sure of the bootstrap key, loads the
    /// active keys (before the first call is served) and refreshes them until `shutdown`.
    pub async fn start(
        &self,
        db: &DatabaseConnection,
        shutdown: CancellationToken,
    ) -> Result<Arc<KeyCache>, BoxError> {
        if let Some(key) = &self.bootstrap_key {
            match store::ensure_bootstrap(db, key).await? {
                Bootstrap::Created(name) => {
                    tracing::info!(api_key = %name, key_prefix = keys::shown_prefix(key), "bootstrap API key created");
                }
                Bootstrap::Present { name, active: false } => {
                    tracing::warn!(api_key = %name, key_prefix = keys::shown_prefix(key), "the bootstrap API key was revoked and stays revoked");
                }
                Bootstrap::Present { active: true, .. } => {}
            }
        }
        let cache = Arc::new(KeyCache::new(self.rate_limits));
        let active = cache.refresh(db).await?;
        if active == 0 {
            tracing::warn!(
                "no active API key: every call but health and reflection is refused; create one with \
                 `esim-keys create` or set GATEWAY_BOOTSTRAP_KEY"
            );
        }
        tracing::info!(active, refresh = ?self.key_refresh, rate_limits = %self.rate_limits, "API keys loaded");
        cache.spawn_refresher(db.clone(), self.key_refresh, shutdown);
        Ok(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bootstrap_key_must_look_like_a_key() {
        let key = keys::generate().unwrap().key;
        let env = Env::from_vars("GATEWAY", [("GATEWAY_BOOTSTRAP_KEY", key.as_str())]);
        let settings = AuthSettings::from_env(&env).unwrap();
        assert_eq!(settings.bootstrap_key.as_deref(), Some(key.as_str()));
        assert!(!format!("{settings:?}").contains(&key));
        assert_eq!(settings.key_refresh, DEFAULT_KEY_REFRESH);

        for bad in [
            "changeme",
            "esk_short",
            "sk_live_0123456789abcdefghijklmnopqrstuv",
        ] {
            let env = Env::from_vars("GATEWAY", [("GATEWAY_BOOTSTRAP_KEY", bad)]);
            let err = AuthSettings::from_env(&env).unwrap_err().to_string();
            assert!(
                err.contains("GATEWAY_BOOTSTRAP_KEY") && !err.contains(bad),
                "{err}"
            );
        }
        let unset = AuthSettings::from_env(&Env::from_vars("GATEWAY", [("GATEWAY_X", "1")])).unwrap();
        assert!(unset.bootstrap_key.is_none());
    }
}

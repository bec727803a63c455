//! Configuration from environment variables, for every binary of the suite.
//!
//! Every service reads its own settings under one prefix (`CATALOG_LISTEN_ADDR`, ...), so one
//! environment (a Kubernetes ConfigMap, a shell) can hold the whole suite's settings without
//! clashes. A secret may be given inline (`X`) or as a path to a file holding it (`X_FILE`,
//! for mounted Kubernetes secrets); secrets are never printed.

use std::{collections::HashMap, env, fmt, net::SocketAddr, str::FromStr, sync::Arc, time::Duration};

/// A configuration value that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The variable is set but its value does not parse.
    #[error("{key}: invalid value {value:?}: {reason}")]
    Invalid {
        /// The environment variable.
        key: String,
        /// The offending value (never a secret: secrets are not parsed here).
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A required variable is missing.
    #[error("{key} must be set")]
    Missing {
        /// The environment variable.
        key: String,
    },
    /// `X_FILE` names a file that cannot be read.
    #[error("{key}: cannot read secret file {path}: {source}")]
    SecretFile {
        /// The environment variable naming the file.
        key: String,
        /// The file path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Reads variables under one prefix: `Env::new("CATALOG")` reads `CATALOG_LISTEN_ADDR` for
/// `"LISTEN_ADDR"`. Tests give it a map instead of the process environment (edition 2024 makes
/// `set_var` unsafe, and the workspace forbids unsafe code).
#[derive(Debug, Clone)]
pub struct Env {
    prefix: String,
    /// Values that win over the process environment (full names, prefix included).
    overrides: Arc<HashMap<String, String>>,
    /// Whether to fall back to the process environment.
    inherit: bool,
}

impl Env {
    /// Settings under `PREFIX_`, from the process environment.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_ascii_uppercase(),
            overrides: Arc::default(),
            inherit: true,
        }
    }

    /// Settings under `PREFIX_`, from the given variables only (full names, prefix included).
    pub fn from_vars<K, V>(prefix: &str, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            inherit: false,
            ..Self::new(prefix).with_overrides(vars)
        }
    }

    /// The same source with `vars` (full names) taking precedence.
    pub fn with_overrides<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let overrides = Arc::make_mut(&mut self.overrides);
        overrides.extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// The same source of variables under another prefix.
    pub fn with_prefix(&self, prefix: &str) -> Self {
        Self {
            prefix: prefix.to_ascii_uppercase(),
            ..self.clone()
        }
    }

    /// The full variable name of `name` under this prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}_{}", self.prefix, name)
    }

    fn lookup(&self, key: &str) -> Option<String> {
        self.overrides
            .get(key)
            .cloned()
            .or_else(|| if self.inherit { env::var(key).ok() } else { None })
    }

    /// The raw value of `PREFIX_NAME`, if set and not blank.
    pub fn raw(&self, name: &str) -> Option<String> {
        self.lookup(&self.key(name))
            .filter(|value| !value.trim().is_empty())
    }

    /// `PREFIX_NAME` parsed, or `default` when unset.
    pub fn parse_or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.raw(name) {
            None => Ok(default),
            Some(value) => value.trim().parse().map_err(|err: T::Err| ConfigError::Invalid {
                key: self.key(name),
                reason: err.to_string(),
                value,
            }),
        }
    }

    /// `PREFIX_NAME` as a string, or `default` when unset.
    pub fn string_or(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or_else(|| default.to_owned())
    }

    /// A boolean (`true/false`, `1/0`, `yes/no`, `on/off`), or `default` when unset.
    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some(value) => match value.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::Invalid {
                    key: self.key(name),
                    value,
                    reason: "expected true or false".into(),
                }),
            },
        }
    }

    /// Seconds (fractions allowed) as a [`Duration`], or `default` when unset.
    pub fn secs_or(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some(value) => value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|secs| secs.is_finite() && *secs >= 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| ConfigError::Invalid {
                    key: self.key(name),
                    value,
                    reason: "expected a non-negative number of seconds".into(),
                }),
        }
    }

    /// A secret: `PREFIX_NAME` itself, or the contents of the file named by `PREFIX_NAME_FILE`
    /// (trailing newlines removed).
    pub fn secret(&self, name: &str) -> Result<Option<String>, ConfigError> {
        if let Some(value) = self.lookup(&self.key(name)).filter(|v| !v.is_empty()) {
            return Ok(Some(value));
        }
        let file_name = format!("{name}_FILE");
        match self.raw(&file_name) {
            None => Ok(None),
            Some(path) => std::fs::read_to_string(&path)
                .map(|text| Some(text.trim_end_matches(['\r', '\n']).to_owned()))
                .map_err(|source| ConfigError::SecretFile {
                    key: self.key(&file_name),
                    path,
                    source,
                }),
        }
    }
}

/// What every service reads under its prefix.
#[derive(Clone)]
pub struct ServiceSettings {
    /// The gRPC listen address (`<P>_LISTEN_ADDR`).
    pub listen_addr: SocketAddr,
    /// The database URL (`<P>_DATABASE_URL`); may hold a password, so it is redacted in `Debug`.
    pub database_url: String,
    /// Whether to run migrations at start (`<P>_MIGRATE`).
    pub migrate: bool,
    /// How long in-flight calls may take to finish after shutdown begins
    /// (`<P>_SHUTDOWN_GRACE_SECS`). Keep it below the pod's termination grace period.
    pub shutdown_grace: Duration,
    /// How long to keep serving, already NOT_SERVING, before refusing new calls
    /// (`<P>_DRAIN_DELAY_SECS`), so load balancers notice the pod is leaving first.
    pub drain_delay: Duration,
    /// Whether to serve gRPC server reflection (`<P>_REFLECTION`, default true), which grpcurl
    /// uses to call without proto files.
    pub reflection: bool,
    /// How long a mutation's request id is remembered for replay
    /// (`<P>_IDEMPOTENCY_RETENTION_HOURS`, default 168 = 7 days; 0 keeps them forever). A retry
    /// with the same request id after that is a new request.
    pub idempotency_retention: Option<Duration>,
}

impl fmt::Debug for ServiceSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceSettings")
            .field("listen_addr", &self.listen_addr)
            .field("database_url", &redact_url(&self.database_url))
            .field("migrate", &self.migrate)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("drain_delay", &self.drain_delay)
            .field("reflection", &self.reflection)
            .field("idempotency_retention", &self.idempotency_retention)
            .finish()
    }
}

/// Defaults: graceful-shutdown budget and drain delay.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

impl ServiceSettings {
    /// Reads the settings of service `name` under `env`, with the given default address. The
    /// default database is the SQLite file `data/<name>.db` (created on first start).
    pub fn from_env(env: &Env, name: &str, default_addr: SocketAddr) -> Result<Self, ConfigError> {
        Ok(Self {
            listen_addr: env.parse_or("LISTEN_ADDR", default_addr)?,
            database_url: env
                .secret("DATABASE_URL")?
                .unwrap_or_else(|| format!("sqlite://data/{name}.db?mode=rwc")),
            migrate: env.bool_or("MIGRATE", true)?,
            shutdown_grace: env.secs_or("SHUTDOWN_GRACE_SECS", DEFAULT_SHUTDOWN_GRACE)?,
            drain_delay: env.secs_or("DRAIN_DELAY_SECS", Duration::ZERO)?,
            reflection: env.bool_or("REFLECTION", true)?,
            idempotency_retention: match env.parse_or("IDEMPOTENCY_RETENTION_HOURS", 168u64)? {
                0 => None,
                // The APIs promise a retry within 24 hours is recognised.
                hours @ 1..24 => {
                    return Err(ConfigError::Invalid {
                        key: env.key("IDEMPOTENCY_RETENTION_HOURS"),
                        value: hours.to_string(),
                        reason: "must be 0 (forever) or at least 24".into(),
                    });
                }
                hours => Some(Duration::from_secs(hours.saturating_mul(3600))),
            },
        })
    }
}

/// A URL with any password replaced by `***`, safe to log.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/catalog?sslmode=require"),
            "postgres://app:***@db:5432/catalog?sslmode=require"
        );
        assert_eq!(
            redact_url("sqlite://data/catalog.db?mode=rwc"),
            "sqlite://data/catalog.db?mode=rwc"
        );
        assert_eq!(redact_url("postgres://db/x"), "postgres://db/x");
    }

    #[test]
    fn settings_debug_hides_the_database_password() {
        let settings = ServiceSettings {
            listen_addr: "127.0.0.1:1".parse().unwrap(),
            database_url: "postgres://u:hunter2@h/d".into(),
            migrate: true,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            drain_delay: Duration::ZERO,
            reflection: true,
            idempotency_retention: None,
        };
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn secrets_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "from-file\n").unwrap();
        let env = Env::from_vars("svc", [("SVC_KEY_FILE", path.to_str().unwrap())]);
        assert_eq!(env.secret("KEY").unwrap().as_deref(), Some("from-file"));
        let env = Env::from_vars("svc", [("SVC_KEY", "inline")]);
        assert_eq!(env.secret("KEY").unwrap().as_deref(), Some("inline"));
        assert_eq!(Env::from_vars("svc", [("A", "b")]).secret("KEY").unwrap(), None);
    }

    #[test]
    fn service_settings_defaults_and_overrides() {
        let default_addr = "127.0.0.1:50052".parse().unwrap();
        let env = Env::from_vars("CATALOG", Vec::<(String, String)>::new());
        let settings = ServiceSettings::from_env(&env, "catalog", default_addr).unwrap();
        assert_eq!(settings.listen_addr, default_addr);
        assert_eq!(settings.database_url, "sqlite://data/catalog.db?mode=rwc");
        assert!(settings.migrate);
        assert_eq!(
            settings.idempotency_retention,
            Some(Duration::from_secs(7 * 24 * 3600))
        );

        let env = Env::from_vars(
            "CATALOG",
            [
                ("CATALOG_LISTEN_ADDR", "0.0.0.0:9000"),
                ("CATALOG_MIGRATE", "off"),
                ("CATALOG_SHUTDOWN_GRACE_SECS", "2.5"),
                ("CATALOG_IDEMPOTENCY_RETENTION_HOURS", "0"),
            ],
        );
        let settings = ServiceSettings::from_env(&env, "catalog", default_addr).unwrap();
        assert_eq!(settings.listen_addr.port(), 9000);
        assert!(!settings.migrate);
        assert_eq!(settings.shutdown_grace, Duration::from_millis(2500));
        assert_eq!(settings.idempotency_retention, None, "0 keeps keys forever");

        let env = Env::from_vars("CATALOG", [("CATALOG_IDEMPOTENCY_RETENTION_HOURS", "12")]);
        let err = ServiceSettings::from_env(&env, "catalog", default_addr).unwrap_err();
        assert!(err.to_string().contains("at least 24"), "{err}");

        let env = Env::from_vars("CATALOG", [("CATALOG_LISTEN_ADDR", "nowhere")]);
        let err = ServiceSettings::from_env(&env, "catalog", default_addr).unwrap_err();
        assert!(err.to_string().contains("CATALOG_LISTEN_ADDR"), "{err}");
    }
}

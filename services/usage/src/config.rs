//! The usage service's settings (`USAGE_*`), as one struct so tests build the service with
//! their own values and `run` reads them from the environment.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use esim_domain::Secret;
use esim_runtime::Env;
use esim_runtime::config::ConfigError;

/// Settings of the usage service (besides the common `USAGE_LISTEN_ADDR`, database, ...).
#[derive(Clone)]
pub struct UsageConfig {
    /// A snapshot younger than this serves reads without an upstream call.
    /// `USAGE_SNAPSHOT_MAX_AGE_SECS`, default 300.
    pub snapshot_max_age: Duration,
    /// Period of the alert poller (SFT, FMS). `USAGE_POLL_INTERVAL_SECS`, default 300.
    pub poll_interval: Duration,
    /// Usage thresholds in percent for synthesised alerts. `USAGE_ALERT_THRESHOLDS`,
    /// default `50,80,100`.
    pub thresholds: Vec<u8>,
    /// "Expiring soon" when validity ends within this. `USAGE_EXPIRY_WINDOW_SECS`, default 86400.
    pub expiry_window: Duration,
    /// How long a poller replica holds an eSIM row. `USAGE_POLL_LEASE_SECS`, default 60.
    pub poll_lease: Duration,
    /// Where the MP alarm callback endpoint listens. `USAGE_CALLBACK_LISTEN_ADDR`,
    /// default `127.0.0.1:8090`.
    pub callback_listen_addr: SocketAddr,
    /// Public URL of the callback endpoint, registered with MP at start when set.
    /// `USAGE_CALLBACK_PUBLIC_URL`.
    pub callback_public_url: Option<String>,
    /// The secret token in the registered URL. `USAGE_CALLBACK_TOKEN` / `_FILE`. Without it the
    /// endpoint refuses every callback (401).
    pub callback_token: Option<Secret>,
    /// Largest accepted callback body in bytes. `USAGE_CALLBACK_MAX_BODY_BYTES`, default 16384.
    pub callback_max_body: usize,
    /// How often a watch stream looks at the alert log when nothing woke it.
    /// `USAGE_WATCH_POLL_MS`, default 200.
    pub watch_poll: Duration,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            snapshot_max_age: Duration::from_secs(300),
            poll_interval: Duration::from_secs(300),
            thresholds: vec![50, 80, 100],
            expiry_window: Duration::from_secs(86_400),
            poll_lease: Duration::from_secs(60),
            callback_listen_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8090),
            callback_public_url: None,
            callback_token: None,
            callback_max_body: 16 * 1024,
            watch_poll: Duration::from_millis(200),
        }
    }
}

impl fmt::Debug for UsageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsageConfig")
            .field("snapshot_max_age", &self.snapshot_max_age)
            .field("poll_interval", &self.poll_interval)
            .field("thresholds", &self.thresholds)
            .field("expiry_window", &self.expiry_window)
            .field("poll_lease", &self.poll_lease)
            .field("callback_listen_addr", &self.callback_listen_addr)
            .field("callback_public_url", &self.callback_public_url)
            .field("callback_token", &self.callback_token.as_ref().map(|_| "***"))
            .field("callback_max_body", &self.callback_max_body)
            .field("watch_poll", &self.watch_poll)
            .finish()
    }
}

impl UsageConfig {
    /// Reads the `USAGE_*` variables of `env` over the defaults.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        let thresholds = match env.raw("ALERT_THRESHOLDS") {
            None => d.thresholds,
            Some(raw) => parse_thresholds(&raw).map_err(|reason| ConfigError::Invalid {
                key: env.key("ALERT_THRESHOLDS"),
                value: raw.clone(),
                reason,
            })?,
        };
        let watch_ms: u64 = env.parse_or("WATCH_POLL_MS", 200)?;
        Ok(Self {
            snapshot_max_age: env.secs_or("SNAPSHOT_MAX_AGE_SECS", d.snapshot_max_age)?,
            poll_interval: env.secs_or("POLL_INTERVAL_SECS", d.poll_interval)?,
            thresholds,
            expiry_window: env.secs_or("EXPIRY_WINDOW_SECS", d.expiry_window)?,
            poll_lease: env.secs_or("POLL_LEASE_SECS", d.poll_lease)?,
            callback_listen_addr: env.parse_or("CALLBACK_LISTEN_ADDR", d.callback_listen_addr)?,
            callback_public_url: env.raw("CALLBACK_PUBLIC_URL"),
            callback_token: env.secret("CALLBACK_TOKEN")?.map(Secret::new),
            callback_max_body: env.parse_or("CALLBACK_MAX_BODY_BYTES", d.callback_max_body)?,
            watch_poll: Duration::from_millis(watch_ms.max(10)),
        })
    }
}

/// `50,80,100` → sorted, deduplicated percentages in 1..=100.
pub fn parse_thresholds(raw: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let value: u8 = part
            .parse()
            .map_err(|_| format!("{part:?} is not a percentage"))?;
        if !(1..=100).contains(&value) {
            return Err(format!("{value} is not between 1 and 100"));
        }
        out.push(value);
    }
    if out.is_empty() {
        return Err("at least one threshold is needed".into());
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_sorted_and_checked() {
        assert_eq!(parse_thresholds("80, 50,100,50").unwrap(), vec![50, 80, 100]);
        assert!(parse_thresholds("0").is_err());
        assert!(parse_thresholds("101").is_err());
        assert!(parse_thresholds("x").is_err());
        assert!(parse_thresholds(" ").is_err());
    }

    #[test]
    fn reads_env_and_hides_the_token() {
        let env = Env::from_vars(
            "USAGE",
            [
                ("USAGE_SNAPSHOT_MAX_AGE_SECS", "5"),
                ("USAGE_ALERT_THRESHOLDS", "75,90"),
                ("USAGE_CALLBACK_LISTEN_ADDR", "127.0.0.1:0"),
                ("USAGE_CALLBACK_TOKEN", "s3cret-token"),
            ],
        );
        let config = UsageConfig::from_env(&env).unwrap();
        assert_eq!(config.snapshot_max_age, Duration::from_secs(5));
        assert_eq!(config.thresholds, vec![75, 90]);
        assert_eq!(config.callback_token.as_ref().unwrap().expose(), "s3cret-token");
        assert!(!format!("{config:?}").contains("s3cret"));
        let bad = Env::from_vars("USAGE", [("USAGE_ALERT_THRESHOLDS", "0")]);
        assert!(UsageConfig::from_env(&bad).is_err());
    }
}

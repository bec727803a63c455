//! Settings of the three clients. Defaults point at the local sandbox
//! (`http://127.0.0.1:8080`); `from_env(&env)` reads the documented variables (`MP_*`, `FMS_*`,
//! `SFT_*`, whatever prefix `env` has), and a secret may instead come from a file named by
//! `<VAR>_FILE` (Kubernetes secrets).

use std::time::Duration;

use esim_config::{ConfigError, Env};
use esim_domain::Secret;

use crate::error::{ErrorKind, Upstream, UpstreamError};

/// Transport settings shared by every upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    /// TCP/TLS connect timeout. Default 5 s. Env `<UP>_CONNECT_TIMEOUT_MS`.
    pub connect_timeout: Duration,
    /// Whole-request timeout. Default 30 s. Env `<UP>_REQUEST_TIMEOUT_MS`.
    pub request_timeout: Duration,
    /// Attempts of an idempotent read, the first included. Default 3. Env `<UP>_RETRY_ATTEMPTS`.
    pub retry_attempts: usize,
    /// First back-off delay (doubled each time, jittered). Default 200 ms.
    pub retry_min_delay: Duration,
    /// Largest back-off delay. Default 2 s.
    pub retry_max_delay: Duration,
    /// Consecutive failures that open the breaker. Default 5. Env `<UP>_BREAKER_THRESHOLD`.
    pub breaker_failure_threshold: u32,
    /// How long the breaker stays open before one probe. Default 30 s.
    /// Env `<UP>_BREAKER_COOLDOWN_MS`.
    pub breaker_cool_down: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry_attempts: 3,
            retry_min_delay: Duration::from_millis(200),
            retry_max_delay: Duration::from_secs(2),
            breaker_failure_threshold: 5,
            breaker_cool_down: Duration::from_secs(30),
        }
    }
}

impl HttpSettings {
    fn from_env(env: &Env, up: Upstream) -> Result<Self, UpstreamError> {
        let d = Self::default();
        let wrap = |err: ConfigError| cfg_err(up, err);
        Ok(Self {
            connect_timeout: ms_or(env, "CONNECT_TIMEOUT_MS", d.connect_timeout).map_err(wrap)?,
            request_timeout: ms_or(env, "REQUEST_TIMEOUT_MS", d.request_timeout).map_err(wrap)?,
            retry_attempts: env.parse_or("RETRY_ATTEMPTS", d.retry_attempts).map_err(wrap)?,
            retry_min_delay: d.retry_min_delay,
            retry_max_delay: d.retry_max_delay,
            breaker_failure_threshold: env
                .parse_or("BREAKER_THRESHOLD", d.breaker_failure_threshold)
                .map_err(wrap)?,
            breaker_cool_down: ms_or(env, "BREAKER_COOLDOWN_MS", d.breaker_cool_down).map_err(wrap)?,
        })
    }
}

/// MP settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MpConfig {
    /// Base URL; paths `/mp-api/api/esim/...` are appended. Default `http://127.0.0.1:8080`.
    /// Env `MP_BASE_URL`.
    pub base_url: String,
    /// APISIX hmac-auth access key (the partner/reseller code). Default `SG00000010`.
    /// Env `MP_ACCESS_KEY`.
    pub access_key: String,
    /// HMAC secret. Default `sandbox-mp-secret`. Env `MP_SECRET_KEY` / `MP_SECRET_KEY_FILE`.
    pub secret_key: Secret,
    /// `Accept-Language`: `en-US` or `zh-CN`. Default `en-US`. Env `MP_LANGUAGE`.
    pub language: String,
    /// Reseller code for `saveAlarmCallbackInterface`. Default `SG00000010`.
    /// Env `MP_RESELLER_CODE`.
    pub reseller_code: String,
    /// Send `X-HMAC-DIGEST` (Base64 SHA-256 of the body) for newer gateways. Default off.
    /// Env `MP_SIGN_BODY_DIGEST` (`true`/`1`).
    pub sign_body_digest: bool,
    /// Transport settings.
    pub http: HttpSettings,
}

impl Default for MpConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8080".into(),
            access_key: "SG00000010".into(),
            secret_key: Secret::new("sandbox-mp-secret"),
            language: "en-US".into(),
            reseller_code: "SG00000010".into(),
            sign_body_digest: false,
            http: HttpSettings::default(),
        }
    }
}

impl MpConfig {
    /// Reads `MP_*` variables from `env` over the defaults.
    pub fn from_env(env: &Env) -> Result<Self, UpstreamError> {
        let up = Upstream::Mp;
        let env = env.with_prefix("MP");
        let wrap = |err: ConfigError| cfg_err(up, err);
        let d = Self::default();
        Ok(Self {
            base_url: env.string_or("BASE_URL", &d.base_url),
            access_key: env.string_or("ACCESS_KEY", &d.access_key),
            secret_key: env
                .secret("SECRET_KEY")
                .map_err(wrap)?
                .map(Secret::new)
                .unwrap_or(d.secret_key),
            language: env.string_or("LANGUAGE", &d.language),
            reseller_code: env.string_or("RESELLER_CODE", &d.reseller_code),
            sign_body_digest: env
                .bool_or("SIGN_BODY_DIGEST", d.sign_body_digest)
                .map_err(wrap)?,
            http: HttpSettings::from_env(&env, up)?,
        })
    }
}

/// FMS settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FmsConfig {
    /// Base URL; paths `/user/...`, `/package/...` are appended.
    /// Default `http://127.0.0.1:8080/fms`. Env `FMS_BASE_URL`.
    pub base_url: String,
    /// Enterprise partner code. Default `1000000005`. Env `FMS_PARTNER_CODE`.
    pub partner_code: String,
    /// `appId` for register/login: 12 app, 10 backend, 14 H5. Default 10. Env `FMS_APP_ID`.
    pub app_id: i64,
    /// `Accept-Language` on every call. Default `en-US`. Env `FMS_LANGUAGE`.
    pub language: String,
    /// Path of the payment notification. Default `/payment/webhook` (the public docs'
    /// path); the seed's navigation also lists `/v1.1/payment/webhook`.
    /// Env `FMS_PAYMENT_WEBHOOK_PATH`.
    pub payment_webhook_path: String,
    /// Transport settings.
    pub http: HttpSettings,
}

impl Default for FmsConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8080/fms".into(),
            partner_code: "1000000005".into(),
            app_id: 10,
            language: "en-US".into(),
            payment_webhook_path: "/payment/webhook".into(),
            http: HttpSettings::default(),
        }
    }
}

impl FmsConfig {
    /// Reads `FMS_*` variables from `env` over the defaults.
    pub fn from_env(env: &Env) -> Result<Self, UpstreamError> {
        let up = Upstream::Fms;
        let env = env.with_prefix("FMS");
        let d = Self::default();
        Ok(Self {
            base_url: env.string_or("BASE_URL", &d.base_url),
            partner_code: env.string_or("PARTNER_CODE", &d.partner_code),
            app_id: env.parse_or("APP_ID", d.app_id).map_err(|err| cfg_err(up, err))?,
            language: env.string_or("LANGUAGE", &d.language),
            payment_webhook_path: env.string_or("PAYMENT_WEBHOOK_PATH", &d.payment_webhook_path),
            http: HttpSettings::from_env(&env, up)?,
        })
    }
}

/// SFT settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SftConfig {
    /// Base URL; paths `/api/...` are appended. Default `http://127.0.0.1:8080/sft`.
    /// Env `SFT_BASE_URL`.
    pub base_url: String,
    /// API user. Default `sandbox`. Env `SFT_USERNAME`.
    pub username: String,
    /// API password. Default `sandbox-password`. Env `SFT_PASSWORD` / `SFT_PASSWORD_FILE`.
    pub password: Secret,
    /// Timeout of lifecycle calls (SFT allows them up to 180 s). Default 190 s.
    /// Env `SFT_LIFECYCLE_TIMEOUT_MS`.
    pub lifecycle_timeout: Duration,
    /// Refresh the access token this long before its `exp`. Default 60 s.
    pub token_refresh_margin: Duration,
    /// Transport settings.
    pub http: HttpSettings,
}

impl Default for SftConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8080/sft".into(),
            username: "sandbox".into(),
            password: Secret::new("sandbox-password"),
            lifecycle_timeout: Duration::from_secs(190),
            token_refresh_margin: Duration::from_secs(60),
            http: HttpSettings::default(),
        }
    }
}

impl SftConfig {
    /// Reads `SFT_*` variables from `env` over the defaults.
    pub fn from_env(env: &Env) -> Result<Self, UpstreamError> {
        let up = Upstream::Sft;
        let env = env.with_prefix("SFT");
        let wrap = |err: ConfigError| cfg_err(up, err);
        let d = Self::default();
        Ok(Self {
            base_url: env.string_or("BASE_URL", &d.base_url),
            username: env.string_or("USERNAME", &d.username),
            password: env
                .secret("PASSWORD")
                .map_err(wrap)?
                .map(Secret::new)
                .unwrap_or(d.password),
            lifecycle_timeout: ms_or(&env, "LIFECYCLE_TIMEOUT_MS", d.lifecycle_timeout).map_err(wrap)?,
            token_refresh_margin: d.token_refresh_margin,
            http: HttpSettings::from_env(&env, up)?,
        })
    }
}

fn cfg_err(up: Upstream, err: ConfigError) -> UpstreamError {
    UpstreamError::new(up, "config", ErrorKind::Invalid(err.to_string()))
}

/// A setting in milliseconds, or `default` when unset.
fn ms_or(env: &Env, name: &str, default: Duration) -> Result<Duration, ConfigError> {
    let default_ms = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
    env.parse_or(name, default_ms).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let mp = MpConfig::default();
        let s = format!("{mp:?}");
        assert!(!s.contains("sandbox-mp-secret"), "{s}");
        let sft = SftConfig::default();
        assert!(!format!("{sft:?}").contains("sandbox-password"));
    }

    #[test]
    fn settings_come_from_the_environment() {
        let env = Env::from_vars(
            "ANY",
            [
                ("MP_BASE_URL", "https://mp.example"),
                ("MP_SECRET_KEY", "s3cret"),
                ("MP_REQUEST_TIMEOUT_MS", "1500"),
                ("FMS_APP_ID", "14"),
                ("SFT_LIFECYCLE_TIMEOUT_MS", "5000"),
            ],
        );
        let mp = MpConfig::from_env(&env).unwrap();
        assert_eq!(mp.base_url, "https://mp.example");
        assert_eq!(mp.secret_key.expose(), "s3cret");
        assert_eq!(mp.http.request_timeout, Duration::from_millis(1500));
        assert_eq!(mp.access_key, "SG00000010");
        assert_eq!(FmsConfig::from_env(&env).unwrap().app_id, 14);
        assert_eq!(
            SftConfig::from_env(&env).unwrap().lifecycle_timeout,
            Duration::from_secs(5)
        );
        let bad = Env::from_vars("ANY", [("MP_RETRY_ATTEMPTS", "many")]);
        assert!(
            MpConfig::from_env(&bad)
                .unwrap_err()
                .to_string()
                .contains("MP_RETRY_ATTEMPTS")
        );
    }

    #[test]
    fn defaults_point_at_sandbox() {
        assert_eq!(MpConfig::default().base_url, "http://127.0.0.1:8080");
        assert_eq!(FmsConfig::default().base_url, "http://127.0.0.1:8080/fms");
        assert_eq!(SftConfig::default().base_url, "http://127.0.0.1:8080/sft");
        assert_eq!(MpConfig::default().secret_key.expose(), "sandbox-mp-secret");
    }
}

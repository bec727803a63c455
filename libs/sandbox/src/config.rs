//! Sandbox configuration: defaults, and reading it from the environment.

use esim_config::{ConfigError, Env};
use std::collections::BTreeMap;
use std::fmt;

use crate::faults::Fault;

/// Everything the sandbox can be told at start. `Default` gives the sandbox defaults that the
/// clients in `esim-upstream` also default to.
#[derive(Clone)]
pub struct SandboxConfig {
    /// Seed of the deterministic RNG (catalogue, inventory, identifiers, fault rolls).
    pub seed: u64,

    /// MP APISIX hmac-auth access key (also the reseller code). Default `SG00000010`.
    pub mp_access_key: String,
    /// MP hmac-auth secret for `mp_access_key`. Default `sandbox-mp-secret`.
    pub mp_secret: String,
    /// Maximum difference, in seconds, between the request's `Date` header and the real wall
    /// clock (not the sandbox clock: clients sign with real time). Default 300.
    pub mp_clock_skew_secs: u64,
    /// Require and check `X-HMAC-DIGEST` (Base64 of HMAC-SHA256(secret, body); Base64 of
    /// SHA-256(body) is also accepted). Default false.
    pub mp_require_body_digest: bool,
    /// SM-DP+ FQDN in MP activation codes.
    pub mp_smdp_fqdn: String,
    /// Sandbox seconds after which a not-enabled MP order (status 0) is "installed and first
    /// used" and moves to status 1 on its own. Default 3600.
    pub mp_first_use_after_secs: u64,
    /// Usage thresholds (percent) at which MP alarm callbacks are sent. Default 50, 80, 100.
    pub alarm_thresholds: Vec<u8>,

    /// FMS partner (enterprise) code. Default `1000000005`.
    pub fms_partner_code: String,
    /// Lifetime of an FMS `x-access-token` in sandbox seconds. Default 3 days.
    pub fms_token_ttl_secs: u64,
    /// Sandbox seconds after a pre-order during which a payment notification is accepted.
    /// Default 600 (10 minutes); later ones answer 6006.
    pub fms_preorder_timeout_secs: u64,
    /// Sandbox seconds between a successful payment notification and `orderPayStatus` 1.
    /// Default 2 (the real platform assigns the profile asynchronously).
    pub fms_processing_secs: u64,
    /// SM-DP+ FQDN in FMS activation codes.
    pub fms_smdp_fqdn: String,

    /// SFT login user name. Default `sandbox`.
    pub sft_username: String,
    /// SFT login password. Default `sandbox-password`.
    pub sft_password: String,
    /// HS256 key of the SFT JWTs.
    pub sft_jwt_secret: String,
    /// Lifetime of an SFT access token in sandbox seconds. Default 900 (15 minutes).
    pub sft_access_ttl_secs: u64,
    /// Lifetime of an SFT refresh token in sandbox seconds. Default 86400.
    pub sft_refresh_ttl_secs: u64,
    /// Number of SIMs in the SFT pool (all Pre-Active 12, Attached 1 at start). Default 200.
    pub sft_pool_size: usize,
    /// Add-on plan ids that SubscribeAddon accepts (operator-configured on the real platform).
    pub sft_plan_ids: Vec<String>,
    /// Maximum active add-ons per endpoint. Default 15.
    pub sft_max_addons: usize,
    /// SM-DP+ FQDN in SFT activation codes.
    pub sft_smdp_fqdn: String,

    /// Faults active from the start, keyed by endpoint (e.g. `mp.activationCode`).
    pub faults: BTreeMap<String, Fault>,
    /// How long a `timeout` fault holds a request before answering 504, in ms. Default 600000.
    pub timeout_hold_ms: u64,
    /// Real-time interval of the background tick that advances usage and sends callbacks, in
    /// ms. Default 500.
    pub tick_interval_ms: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            mp_access_key: "SG00000010".into(),
            mp_secret: "sandbox-mp-secret".into(),
            mp_clock_skew_secs: 300,
            mp_require_body_digest: false,
            mp_smdp_fqdn: "rsp-mp.sandbox.esim.test".into(),
            mp_first_use_after_secs: 3600,
            alarm_thresholds: vec![50, 80, 100],
            fms_partner_code: "1000000005".into(),
            fms_token_ttl_secs: 3 * 24 * 3600,
            fms_preorder_timeout_secs: 600,
            fms_processing_secs: 2,
            fms_smdp_fqdn: "rsp-fms.sandbox.esim.test".into(),
            sft_username: "sandbox".into(),
            sft_password: "sandbox-password".into(),
            sft_jwt_secret: "sandbox-sft-jwt-secret".into(),
            sft_access_ttl_secs: 900,
            sft_refresh_ttl_secs: 86_400,
            sft_pool_size: 200,
            sft_plan_ids: vec![
                "PLAN-TRAVEL-1GB-7D".into(),
                "PLAN-TRAVEL-3GB-15D".into(),
                "PLAN-TRAVEL-5GB-30D".into(),
                "PLAN-TRAVEL-10GB-30D".into(),
                "1001".into(),
                "1002".into(),
                "1003".into(),
            ],
            sft_max_addons: 15,
            sft_smdp_fqdn: "rsp-sft.sandbox.esim.test".into(),
            faults: BTreeMap::new(),
            timeout_hold_ms: 600_000,
            tick_interval_ms: 500,
        }
    }
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("seed", &self.seed)
            .field("mp_access_key", &self.mp_access_key)
            .field("mp_secret", &"<redacted>")
            .field("mp_clock_skew_secs", &self.mp_clock_skew_secs)
            .field("mp_require_body_digest", &self.mp_require_body_digest)
            .field("alarm_thresholds", &self.alarm_thresholds)
            .field("fms_partner_code", &self.fms_partner_code)
            .field("sft_username", &self.sft_username)
            .field("sft_password", &"<redacted>")
            .field("sft_jwt_secret", &"<redacted>")
            .field("sft_pool_size", &self.sft_pool_size)
            .field("sft_plan_ids", &self.sft_plan_ids)
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

fn list(env: &Env, name: &str) -> Option<Vec<String>> {
    env.raw(name).map(|v| {
        v.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

fn invalid(env: &Env, name: &str, value: String, reason: impl fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        key: env.key(name),
        value,
        reason: reason.to_string(),
    }
}

impl SandboxConfig {
    /// The defaults, overridden by whichever of these environment variables are set:
    /// `SANDBOX_SEED`, `SANDBOX_MP_ACCESS_KEY`, `SANDBOX_MP_SECRET`,
    /// `SANDBOX_MP_CLOCK_SKEW_SECS`, `SANDBOX_MP_REQUIRE_BODY_DIGEST` (true/false),
    /// `SANDBOX_MP_FIRST_USE_AFTER_SECS`, `SANDBOX_ALARM_THRESHOLDS` (e.g. `50,80,100`),
    /// `SANDBOX_FMS_PARTNER_CODE`, `SANDBOX_FMS_TOKEN_TTL_SECS`,
    /// `SANDBOX_FMS_PREORDER_TIMEOUT_SECS`, `SANDBOX_FMS_PROCESSING_SECS`,
    /// `SANDBOX_SFT_USERNAME`, `SANDBOX_SFT_PASSWORD`, `SANDBOX_SFT_JWT_SECRET`,
    /// `SANDBOX_SFT_ACCESS_TTL_SECS`, `SANDBOX_SFT_POOL_SIZE`, `SANDBOX_SFT_PLAN_IDS`
    /// (comma-separated), `SANDBOX_SFT_MAX_ADDONS`, `SANDBOX_TIMEOUT_HOLD_MS`,
    /// `SANDBOX_TICK_INTERVAL_MS`, and `SANDBOX_FAULTS` (a JSON object of endpoint key →
    /// [`Fault`]).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let env = env.with_prefix("SANDBOX");
        let d = Self::default();
        let alarm_thresholds = match list(&env, "ALARM_THRESHOLDS") {
            None => d.alarm_thresholds,
            Some(values) => values
                .iter()
                .map(|s| s.trim_end_matches('%').parse::<u8>())
                .collect::<Result<_, _>>()
                .map_err(|e| invalid(&env, "ALARM_THRESHOLDS", values.join(","), e))?,
        };
        let faults = match env.raw("FAULTS") {
            None => d.faults,
            Some(json) => serde_json::from_str(&json).map_err(|e| invalid(&env, "FAULTS", json, e))?,
        };
        Ok(Self {
            seed: env.parse_or("SEED", d.seed)?,
            mp_access_key: env.string_or("MP_ACCESS_KEY", &d.mp_access_key),
            mp_secret: env.secret("MP_SECRET")?.unwrap_or(d.mp_secret),
            mp_clock_skew_secs: env.parse_or("MP_CLOCK_SKEW_SECS", d.mp_clock_skew_secs)?,
            mp_require_body_digest: env.bool_or("MP_REQUIRE_BODY_DIGEST", d.mp_require_body_digest)?,
            mp_first_use_after_secs: env.parse_or("MP_FIRST_USE_AFTER_SECS", d.mp_first_use_after_secs)?,
            alarm_thresholds,
            fms_partner_code: env.string_or("FMS_PARTNER_CODE", &d.fms_partner_code),
            fms_token_ttl_secs: env.parse_or("FMS_TOKEN_TTL_SECS", d.fms_token_ttl_secs)?,
            fms_preorder_timeout_secs: env
                .parse_or("FMS_PREORDER_TIMEOUT_SECS", d.fms_preorder_timeout_secs)?,
            fms_processing_secs: env.parse_or("FMS_PROCESSING_SECS", d.fms_processing_secs)?,
            sft_username: env.string_or("SFT_USERNAME", &d.sft_username),
            sft_password: env.secret("SFT_PASSWORD")?.unwrap_or(d.sft_password),
            sft_jwt_secret: env.secret("SFT_JWT_SECRET")?.unwrap_or(d.sft_jwt_secret),
            sft_access_ttl_secs: env.parse_or("SFT_ACCESS_TTL_SECS", d.sft_access_ttl_secs)?,
            sft_pool_size: env.parse_or("SFT_POOL_SIZE", d.sft_pool_size)?,
            sft_plan_ids: list(&env, "SFT_PLAN_IDS").unwrap_or(d.sft_plan_ids),
            sft_max_addons: env.parse_or("SFT_MAX_ADDONS", d.sft_max_addons)?,
            timeout_hold_ms: env.parse_or("TIMEOUT_HOLD_MS", d.timeout_hold_ms)?,
            tick_interval_ms: env.parse_or("TICK_INTERVAL_MS", d.tick_interval_ms)?,
            faults,
            ..d
        })
    }
}

//! Rate limits: per API key and per required scope, a token bucket (GCRA, `governor`), so a
//! caller hammering the catalogue cannot starve its own orders, and no caller can starve the
//! others.
//!
//! Defaults per scope come from `GATEWAY_RATE_LIMIT_READ` (1000/2000), `GATEWAY_RATE_LIMIT_ORDER`
//! (100/200) and `GATEWAY_RATE_LIMIT_ADMIN` (10/20), each `<requests per second>/<burst>`; a
//! key's own `rate_limit` replaces them for all its buckets. A bucket is one atomic word: the
//! hot path takes no lock.

use std::num::NonZeroU32;
use std::time::Duration;

use esim_runtime::{Env, config::ConfigError};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter, clock::Clock};

use crate::scopes::Scope;

/// The largest rate or burst the API accepts.
pub const MAX_LIMIT: u32 = 100_000;

/// A token bucket's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Sustained requests per second.
    pub requests_per_second: NonZeroU32,
    /// Bucket size: requests allowed at once after a quiet spell.
    pub burst: NonZeroU32,
}

impl Limit {
    /// A limit of `rps` per second and `burst`; `None` unless both are 1-[`MAX_LIMIT`] and the
    /// burst is at least the rate.
    pub fn new(rps: u32, burst: u32) -> Option<Self> {
        let valid = (1..=MAX_LIMIT).contains(&rps) && (1..=MAX_LIMIT).contains(&burst) && burst >= rps;
        valid.then_some(Self {
            requests_per_second: NonZeroU32::new(rps)?,
            burst: NonZeroU32::new(burst)?,
        })
    }

    /// Parses the setting form `<rps>/<burst>`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (rps, burst) = text
            .trim()
            .split_once('/')
            .ok_or("expected <requests per second>/<burst>, e.g. 100/200")?;
        let number = |s: &str| s.trim().parse::<u32>().map_err(|err| format!("{s:?}: {err}"));
        Self::new(number(rps)?, number(burst)?)
            .ok_or_else(|| format!("both must be 1-{MAX_LIMIT} and the burst at least the rate"))
    }

    fn quota(self) -> Quota {
        Quota::per_second(self.requests_per_second).allow_burst(self.burst)
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.requests_per_second, self.burst)
    }
}

/// The limit of each scope for keys without their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeLimits {
    /// READ calls.
    pub read: Limit,
    /// ORDER calls.
    pub order: Limit,
    /// ADMIN calls.
    pub admin: Limit,
}

impl Default for ScopeLimits {
    /// Generous: high enough that no well-behaved caller notices, low enough that a runaway
    /// loop cannot take the backends down.
    fn default() -> Self {
        let limit = |rps, burst| Limit::new(rps, burst).unwrap_or_else(|| unreachable!("valid constant"));
        Self {
            read: limit(1000, 2000),
            order: limit(100, 200),
            admin: limit(10, 20),
        }
    }
}

impl std::fmt::Display for ScopeLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "read {}, order {}, admin {}",
            self.read, self.order, self.admin
        )
    }
}

impl ScopeLimits {
    /// Reads `RATE_LIMIT_READ`, `RATE_LIMIT_ORDER`, `RATE_LIMIT_ADMIN`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let read = |name: &str, default: Limit| match env.raw(name) {
            None => Ok(default),
            Some(value) => Limit::parse(&value).map_err(|reason| ConfigError::Invalid {
                key: env.key(name),
                value,
                reason,
            }),
        };
        Ok(Self {
            read: read("RATE_LIMIT_READ", defaults.read)?,
            order: read("RATE_LIMIT_ORDER", defaults.order)?,
            admin: read("RATE_LIMIT_ADMIN", defaults.admin)?,
        })
    }

    /// The default of `scope`.
    pub fn of(&self, scope: Scope) -> Limit {
        match scope {
            Scope::Read => self.read,
            Scope::Order => self.order,
            Scope::Admin => self.admin,
        }
    }
}

/// One token bucket, with the limit it was built for (so a refresh keeps it, and its state,
/// while the limit stays the same).
#[derive(Debug)]
pub struct Bucket {
    limit: Limit,
    limiter: DefaultDirectRateLimiter,
}

impl Bucket {
    /// A full bucket of `limit`.
    pub fn new(limit: Limit) -> Self {
        Self {
            limit,
            limiter: RateLimiter::direct(limit.quota()),
        }
    }

    /// The limit it enforces.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// Takes one token, or tells how long until one is available.
    pub fn take(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_refuse_nonsense() {
        assert_eq!(Limit::parse("100/200").unwrap(), Limit::new(100, 200).unwrap());
        assert_eq!(Limit::parse(" 5 / 5 ").unwrap().to_string(), "5/5");
        for bad in ["100", "0/10", "10/5", "a/b", "100001/100001", "-1/2"] {
            assert!(Limit::parse(bad).is_err(), "{bad}");
        }
        let env = Env::from_vars("GATEWAY", [("GATEWAY_RATE_LIMIT_ORDER", "7/9")]);
        let limits = ScopeLimits::from_env(&env).unwrap();
        assert_eq!(limits.order, Limit::new(7, 9).unwrap());
        assert_eq!(limits.read, ScopeLimits::default().read);
        let env = Env::from_vars("GATEWAY", [("GATEWAY_RATE_LIMIT_READ", "lots")]);
        let err = ScopeLimits::from_env(&env).unwrap_err().to_string();
        assert!(err.contains("GATEWAY_RATE_LIMIT_READ"), "{err}");
    }

    #[test]
    fn a_bucket_allows_its_burst_then_says_how_long_to_wait() {
        let bucket = Bucket::new(Limit::new(1, 3).unwrap());
        for _ in 0..3 {
            bucket.take().unwrap();
        }
        let wait = bucket.take().unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
    }
}

use std::fmt;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, FixedOffset};
use esim_domain::{ActivationCode, Iccid, Secret};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::wire;
use crate::config::SftConfig;
use crate::error::{ErrorKind, Upstream, UpstreamError};
use crate::http::{HttpClient, Idempotency, decode_json};
use crate::wire_common::{NumOrStr, Sensitive};

const UP: Upstream = Upstream::Sft;

/// The `exp` claim (seconds since the epoch) of a JWT, read without verifying it.
pub fn jwt_exp(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: Option<i64>,
    }
    serde_json::from_slice::<Claims>(&bytes).ok()?.exp
}

#[derive(Clone)]
struct Tokens {
    access: Secret,
    refresh: Option<Secret>,
    exp: Option<i64>,
}

/// Lifecycle targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifeCycle {
    /// "A": activate.
    Active,
    /// "S": suspend.
    Suspended,
}

impl LifeCycle {
    fn code(self) -> &'static str {
        match self {
            Self::Active => "A",
            Self::Suspended => "S",
        }
    }
}

/// Filters of `fetchSIM`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SimQuery {
    /// 12 = Pre-Active.
    pub sim_status_id: Option<i64>,
    /// 1 = Attached.
    pub sim_attach_status_id: Option<i64>,
    /// One SIM.
    pub iccid: Option<Iccid>,
    /// Page from 1.
    pub page: Option<u32>,
    /// Rows per page.
    pub per_page: Option<u32>,
}

impl SimQuery {
    /// Pre-Active (12), Attached (1) SIMs, one page of `per_page`.
    pub fn available(per_page: u32) -> Self {
        Self {
            sim_status_id: Some(12),
            sim_attach_status_id: Some(1),
            iccid: None,
            page: Some(1),
            per_page: Some(per_page),
        }
    }
}

/// A SIM from `fetchSIM`.
#[derive(Debug, Clone, PartialEq)]
pub struct SimInfo {
    /// Endpoint id.
    pub end_point_id: String,
    /// ICCID.
    pub iccid: Iccid,
    /// Activation code (credential).
    pub activation_code: Option<ActivationCode>,
    /// SIM status.
    pub sim_status_id: Option<i64>,
    /// Attach status.
    pub sim_attach_status_id: Option<i64>,
}

/// An add-on counter in bytes (data) or units (SMS / other).
#[derive(Debug, Clone, PartialEq)]
pub struct Counter {
    /// Name.
    pub name: Option<String>,
    /// Allowance in bytes (1 KB = 1024 B).
    pub total_bytes: Option<u64>,
    /// Used bytes.
    pub used_bytes: Option<u64>,
    /// Remaining bytes.
    pub remaining_bytes: Option<u64>,
}

/// An add-on instance.
#[derive(Debug, Clone, PartialEq)]
pub struct AddonInfo {
    /// addonInstanceId (`uniqueId`).
    pub unique_id: String,
    /// Endpoint.
    pub end_point_id: Option<String>,
    /// Plan.
    pub plan_id: Option<String>,
    /// Plan name.
    pub plan_name: Option<String>,
    /// Status text.
    pub status: Option<String>,
    /// Validity start.
    pub valid_from: Option<DateTime<FixedOffset>>,
    /// Validity end.
    pub valid_to: Option<DateTime<FixedOffset>>,
    /// Benefit.
    pub benefit: Option<String>,
    /// Counters.
    pub counters: Vec<Counter>,
}

fn unit_bytes(unit: Option<&str>) -> Option<u64> {
    match unit.map(|u| u.trim().to_ascii_uppercase()).as_deref() {
        None | Some("B") | Some("BYTE") | Some("BYTES") => Some(1),
        Some("KB") => Some(1024),
        Some("MB") => Some(1024 * 1024),
        Some("GB") => Some(1024 * 1024 * 1024),
        _ => None,
    }
}

fn scaled(v: Option<&NumOrStr>, mult: u64) -> Option<u64> {
    let d = v?.to_decimal()?;
    let b = d.checked_mul(rust_decimal::Decimal::from(mult))?.floor();
    u64::try_from(b).ok()
}

impl TryFrom<wire::AddonRow> for AddonInfo {
    type Error = String;
    fn try_from(w: wire::AddonRow) -> Result<Self, String> {
        let time = |f: &str, s: Option<&str>| -> Result<Option<DateTime<FixedOffset>>, String> {
            match s.map(str::trim).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(t) => DateTime::parse_from_rfc3339(t)
                    .map(Some)
                    .map_err(|_| format!("{f} {t:?} is not RFC 3339")),
            }
        };
        let counters = w
            .counters
            .iter()
            .map(|c| {
                let m = unit_bytes(c.unit.as_deref())
                    .ok_or_else(|| format!("counter unit {:?} is unknown", c.unit))?;
                Ok(Counter {
                    name: c.name.clone(),
                    total_bytes: scaled(c.total.as_ref(), m),
                    used_bytes: scaled(c.used.as_ref(), m),
                    remaining_bytes: scaled(c.remaining.as_ref(), m),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            unique_id: w.unique_id.as_text(),
            end_point_id: w.end_point_id.as_ref().map(NumOrStr::as_text),
            plan_id: w.plan_id.as_ref().map(NumOrStr::as_text),
            plan_name: w.plan_name,
            status: w.status,
            valid_from: time("startDate", w.start_date.as_deref())?,
            valid_to: time("endDate", w.end_date.as_deref())?,
            benefit: w.benefit,
            counters,
        })
    }
}

/// The SFT client: logs in with the configured user, refreshes the JWT before its `exp`
/// (or after a 401, then retries that call once).
pub struct SftClient {
    cfg: SftConfig,
    http: HttpClient,
    tokens: tokio::sync::Mutex<Option<Tokens>>,
}

impl fmt::Debug for SftClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftClient")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn decode_err(call: &'static str, mutating: bool, msg: String) -> UpstreamError {
    UpstreamError::new(UP, call, ErrorKind::Decode(msg)).mutating(mutating)
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl SftClient {
    /// Builds the client.
    pub fn new(cfg: SftConfig) -> Result<Self, UpstreamError> {
        let http = HttpClient::new(UP, cfg.http.clone())?;
        Ok(Self {
            cfg,
            http,
            tokens: tokio::sync::Mutex::new(None),
        })
    }

    /// The settings.
    pub fn config(&self) -> &SftConfig {
        &self.cfg
    }

    /// The transport.
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.cfg.base_url.trim_end_matches('/'), path)
    }

    async fn login_call<B: Serialize>(
        &self,
        call: &'static str,
        path: &str,
        body: &B,
        request_id: &str,
    ) -> Result<Tokens, UpstreamError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| UpstreamError::new(UP, call, ErrorKind::Invalid(e.to_string())))?;
        let url = self.url(path);
        let resp = self
            .http
            .send(call, request_id, Idempotency::Read, |c| {
                Ok(c.post(&url)
                    .header("Content-Type", "application/json")
                    .body(bytes.clone()))
            })
            .await?;
        let r: wire::LoginResponse = decode_json(UP, call, false, &resp.body)?;
        Ok(Tokens {
            exp: jwt_exp(r.access_token.expose()),
            access: Secret::new(r.access_token.expose()),
            refresh: r.refresh_token.map(|t| Secret::new(t.expose())),
        })
    }

    async fn fresh_tokens(&self, old: Option<&Tokens>, request_id: &str) -> Result<Tokens, UpstreamError> {
        if let Some(refresh) = old.and_then(|t| t.refresh.as_ref()) {
            let body = wire::RefreshRequest {
                refresh_token: Sensitive::new(refresh.expose()),
            };
            match self
                .login_call("refreshToken", wire::PATH_REFRESH, &body, request_id)
                .await
            {
                Ok(t) => return Ok(t),
                Err(e) => tracing::info!(error = %e, "SFT refresh failed, logging in"),
            }
        }
        let body = wire::LoginRequest {
            username: self.cfg.username.clone(),
            password: Sensitive::new(self.cfg.password.expose()),
        };
        self.login_call("login", wire::PATH_LOGIN, &body, request_id)
            .await
    }

    /// A valid access token (logging in or refreshing when missing or near `exp`).
    async fn access_token(&self, request_id: &str) -> Result<Secret, UpstreamError> {
        let mut g = self.tokens.lock().await;
        let margin = i64::try_from(self.cfg.token_refresh_margin.as_secs()).unwrap_or(60);
        if let Some(t) = g.as_ref() {
            let fresh = t.exp.is_none_or(|exp| exp - margin > now_secs());
            if fresh {
                return Ok(t.access.clone());
            }
        }
        let t = self.fresh_tokens(g.as_ref(), request_id).await?;
        let access = t.access.clone();
        *g = Some(t);
        Ok(access)
    }

    async fn invalidate(&self, stale: &Secret) {
        let mut g = self.tokens.lock().await;
        if g.as_ref().is_some_and(|t| &t.access == stale) {
            *g = None;
        }
    }

    /// Logs in now (e.g. at start, to fail fast on bad credentials).
    pub async fn login(&self, request_id: &str) -> Result<(), UpstreamError> {
        let t = self.fresh_tokens(None, request_id).await?;
        *self.tokens.lock().await = Some(t);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn call<R: DeserializeOwned>(
        &self,
        call: &'static str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&[u8]>,
        idem: Idempotency,
        timeout: Option<Duration>,
        request_id: &str,
    ) -> Result<Vec<R>, UpstreamError> {
        let mutating = idem == Idempotency::Mutation;
        let url = self.url(path);
        let mut retried = false;
        loop {
            let token = self.access_token(request_id).await?;
            let result = self
                .http
                .send(call, request_id, idem, |c| {
                    let mut rb = c
                        .request(method.clone(), &url)
                        .header(wire::HEADER_AUTH, format!("Bearer {}", token.expose()))
                        .header("Content-Type", "application/json");
                    if !query.is_empty() {
                        rb = rb.query(query);
                    }
                    if let Some(b) = body {
                        rb = rb.body(b.to_vec());
                    }
                    if let Some(t) = timeout {
                        rb = rb.timeout(t);
                    }
                    Ok(rb)
                })
                .await;
            let resp = match result {
                Err(e) if matches!(e.kind, ErrorKind::Auth(_)) && !retried => {
                    // 401: the call was refused, so repeating it once is safe.
                    retried = true;
                    self.invalidate(&token).await;
                    continue;
                }
                other => other?,
            };
            let env: wire::ResponseEnvelope<R> = decode_json(UP, call, mutating, &resp.body)?;
            let r = env.response;
            if r.result_code != 0 {
                return Err(UpstreamError::new(
                    UP,
                    call,
                    ErrorKind::Upstream {
                        code: r.result_code,
                        message: r
                            .result_param
                            .and_then(|p| p.result_description)
                            .unwrap_or_default(),
                        fms: None,
                    },
                ));
            }
            return Ok(r.response_param.map(|p| p.rows).unwrap_or_default());
        }
    }

    fn body<P: Serialize>(
        call: &'static str,
        env: &wire::RequestEnvelope<P>,
    ) -> Result<Vec<u8>, UpstreamError> {
        serde_json::to_vec(env).map_err(|e| UpstreamError::new(UP, call, ErrorKind::Invalid(e.to_string())))
    }

    /// `GET /api/fetchSIM`. Rows without an ICCID (all-null "nothing found" rows) are
    /// dropped; an empty answer means no SIM matched.
    pub async fn fetch_sim(&self, q: &SimQuery, request_id: &str) -> Result<Vec<SimInfo>, UpstreamError> {
        const CALL: &str = "fetchSIM";
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(v) = q.sim_status_id {
            query.push(("simStatusId", v.to_string()));
        }
        if let Some(v) = q.sim_attach_status_id {
            query.push(("simAttachStatusId", v.to_string()));
        }
        if let Some(v) = &q.iccid {
            query.push(("iccid", v.to_string()));
        }
        if let Some(v) = q.page {
            query.push(("page", v.to_string()));
        }
        if let Some(v) = q.per_page {
            query.push(("perPage", v.to_string()));
        }
        let rows: Vec<wire::SimRow> = self
            .call(
                CALL,
                Method::GET,
                wire::PATH_FETCH_SIM,
                &query,
                None,
                Idempotency::Read,
                None,
                request_id,
            )
            .await?;
        rows.into_iter()
            .filter(|r| r.iccid.as_deref().is_some_and(|s| !s.trim().is_empty()))
            .map(|r| {
                let iccid = r
                    .iccid
                    .as_deref()
                    .unwrap_or_default()
                    .parse()
                    .map_err(|e| format!("iccid: {e}"))?;
                let end_point_id = r
                    .end_point_id
                    .as_ref()
                    .map(NumOrStr::as_text)
                    .ok_or("endPointId is missing")?;
                let activation_code = r
                    .activation_code
                    .and_then(|a| a.text_qr_code)
                    .filter(|t| !t.expose().trim().is_empty())
                    .map(|t| t.expose().parse().map_err(|e| format!("textQrCode: {e}")))
                    .transpose()?;
                Ok(SimInfo {
                    end_point_id,
                    iccid,
                    activation_code,
                    sim_status_id: r.sim_status_id,
                    sim_attach_status_id: r.sim_attach_status_id,
                })
            })
            .collect::<Result<_, String>>()
            .map_err(|m| decode_err(CALL, false, m))
    }

    /// `POST /api/EndPointLifeCycleChange` with the separate lifecycle timeout (SFT allows
    /// up to 180 s). Sent once.
    pub async fn change_life_cycle(
        &self,
        end_point_id: &str,
        target: LifeCycle,
        reason: &str,
        request_id: &str,
    ) -> Result<(), UpstreamError> {
        const CALL: &str = "EndPointLifeCycleChange";
        let env = wire::RequestEnvelope {
            request: wire::RequestBody {
                end_point_id: Some(NumOrStr::Str(end_point_id.to_owned())),
                request_param: wire::LifeCycleParam {
                    life_cycle: target.code().to_owned(),
                    reason: reason.to_owned(),
                },
            },
        };
        let body = Self::body(CALL, &env)?;
        let _: Vec<serde_json::Value> = self
            .call(
                CALL,
                Method::POST,
                wire::PATH_LIFECYCLE,
                &[],
                Some(&body),
                Idempotency::Mutation,
                Some(self.cfg.lifecycle_timeout),
                request_id,
            )
            .await?;
        Ok(())
    }

    /// `POST /api/SubscribeAddon`: returns the add-on instance (its `uniqueId`). Sent once.
    pub async fn subscribe_addon(
        &self,
        end_point_id: &str,
        plan_id: &str,
        request_id: &str,
    ) -> Result<AddonInfo, UpstreamError> {
        const CALL: &str = "SubscribeAddon";
        let env = wire::RequestEnvelope {
            request: wire::RequestBody {
                end_point_id: None,
                request_param: wire::SubscribeAddonParam {
                    end_point_id: NumOrStr::Str(end_point_id.to_owned()),
                    plan_id: NumOrStr::Str(plan_id.to_owned()),
                },
            },
        };
        let body = Self::body(CALL, &env)?;
        let rows: Vec<wire::AddonRow> = self
            .call(
                CALL,
                Method::POST,
                wire::PATH_SUBSCRIBE_ADDON,
                &[],
                Some(&body),
                Idempotency::Mutation,
                None,
                request_id,
            )
            .await?;
        let row = rows
            .into_iter()
            .next()
            .ok_or_else(|| decode_err(CALL, true, "no add-on row in the answer".into()))?;
        AddonInfo::try_from(row).map_err(|m| decode_err(CALL, true, m))
    }

    /// Add-on details of an endpoint (balance, validity, counters).
    pub async fn addon_details(
        &self,
        end_point_id: &str,
        request_id: &str,
    ) -> Result<Vec<AddonInfo>, UpstreamError> {
        const CALL: &str = "GetEndPointAddonDetails";
        let query = [("endPointId", end_point_id.to_owned())];
        let rows: Vec<wire::AddonRow> = self
            .call(
                CALL,
                Method::GET,
                wire::PATH_ADDON_DETAILS,
                &query,
                None,
                Idempotency::Read,
                None,
                request_id,
            )
            .await?;
        rows.into_iter()
            .map(|r| AddonInfo::try_from(r).map_err(|m| decode_err(CALL, false, m)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_jwt_exp() {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let tok = format!(
            "{}.{}.sig",
            e.encode(br#"{"alg":"HS256"}"#),
            e.encode(br#"{"sub":"x","exp":2000000000}"#)
        );
        assert_eq!(jwt_exp(&tok), Some(2_000_000_000));
        assert_eq!(jwt_exp("garbage"), None);
        assert_eq!(jwt_exp("a.!!!.c"), None);
    }
}

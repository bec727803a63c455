//! The SFT (BICS SIM for Things) simulator, mounted under `/sft`.
//!
//! Response envelope `{"Response":{"resultCode":0,"resultParam":{"resultDescription":".."},
//! "responseParam":{...,"rows":[...]}}}`; `resultCode` != 0 is an error (HTTP 200). Auth
//! failures answer HTTP 401 with the envelope and `resultCode` 401.
//!
//! SIM statuses (`simStatusId`): 12 Pre-Active, 1 Active, 2 Suspended; attach status
//! (`simAttachStatusId`) 1 Attached. `fetchSIM` reserves nothing (as the real platform): two
//! callers may see the same SIM. Lifecycle "A" on an already Active endpoint answers
//! `resultCode` 0 with the description "Endpoint is already Active" (no change), so a retried
//! activation is harmless; "S" on a Pre-Active endpoint is refused (`resultCode` 1).
//! Add-ons: plans come from `sft_plan_ids`; a plan id like `PLAN-TRAVEL-3GB-15D` means 3 GB for
//! 15 days, other ids 1 GB for 7 days. An add-on is active until its data or validity ends; its
//! counters grow with the sandbox clock (the data lasts about 0.6–1.4 × the validity).

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::config::SandboxConfig;
use crate::ids::{self, Rng};
use crate::util::{self, Req, str_field};
use crate::{Inner, Shared, lock};

const BASE: &str = "/sft";
const MB: u64 = 1024 * 1024;

/// Pre-Active.
pub(crate) const PRE_ACTIVE: u64 = 12;
/// Active.
pub(crate) const ACTIVE: u64 = 1;
/// Suspended.
pub(crate) const SUSPENDED: u64 = 2;
/// Attached.
pub(crate) const ATTACHED: u64 = 1;

fn status_name(id: u64) -> &'static str {
    match id {
        PRE_ACTIVE => "Pre-Active",
        ACTIVE => "Active",
        SUSPENDED => "Suspended",
        _ => "Unknown",
    }
}

/// One SIM / endpoint.
#[derive(Debug, Clone)]
pub(crate) struct SftSim {
    pub endpoint_id: u64,
    pub iccid: String,
    pub eid: String,
    pub imsi: String,
    pub msisdn: String,
    pub qr: String,
    pub status: u64,
    pub attach: u64,
}

/// One add-on instance.
#[derive(Debug, Clone)]
pub(crate) struct Addon {
    pub unique_id: String,
    pub endpoint_id: u64,
    pub plan_id: String,
    pub total_bytes: u64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub rate_bps: f64,
}

impl Addon {
    fn used(&self, now: DateTime<Utc>) -> u64 {
        let t = now.min(self.end);
        let secs = (t - self.start).num_seconds().max(0) as f64;
        ((secs * self.rate_bps) as u64).min(self.total_bytes)
    }

    fn active(&self, now: DateTime<Utc>) -> bool {
        now < self.end && self.used(now) < self.total_bytes
    }
}

/// All SFT state.
#[derive(Debug)]
pub(crate) struct SftState {
    rng: Rng,
    pub sims: Vec<SftSim>,
    pub addons: Vec<Addon>,
    next_addon: u64,
    next_jti: u64,
}

impl SftState {
    pub(crate) fn new(config: &SandboxConfig, mut rng: Rng) -> Self {
        let sims = (0..config.sft_pool_size)
            .map(|i| SftSim {
                endpoint_id: 7_000_001 + i as u64,
                iccid: ids::iccid(&mut rng, "893244", 20),
                eid: ids::eid(&mut rng),
                imsi: format!("20601{}", rng.digits(10)),
                msisdn: format!("32{}", rng.digits(9)),
                qr: ids::activation_code(&mut rng, &config.sft_smdp_fqdn),
                status: PRE_ACTIVE,
                attach: ATTACHED,
            })
            .collect();
        Self {
            rng,
            sims,
            addons: Vec::new(),
            next_addon: 1,
            next_jti: 1,
        }
    }
}

fn envelope(http: StatusCode, code: i64, desc: &str, param: Value) -> Response {
    util::json(
        http,
        json!({"Response": {
            "resultCode": code,
            "resultParam": {"resultDescription": desc},
            "responseParam": param,
        }}),
    )
}

fn success(param: Value) -> Response {
    envelope(StatusCode::OK, 0, "Success", param)
}

fn fail(code: i64, desc: &str) -> Response {
    envelope(StatusCode::OK, code, desc, json!({"rows": []}))
}

fn unauthorized(desc: &str) -> Response {
    envelope(StatusCode::UNAUTHORIZED, 401, desc, Value::Null)
}

// ---------------------------------------------------------------------------------------------
// JWT (HS256).

type HmacSha256 = Hmac<Sha256>;

fn sign(secret: &str, data: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(data.as_bytes());
    B64URL.encode(mac.finalize().into_bytes())
}

fn make_jwt(inner: &Inner, sft: &mut SftState, kind: &str, ttl: u64) -> (String, i64) {
    let now = inner.now().timestamp();
    let exp = now + ttl as i64;
    let jti = sft.next_jti;
    sft.next_jti += 1;
    let header = B64URL.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({"sub": inner.config.sft_username, "iat": now, "exp": exp, "typ": kind,
                        "jti": jti.to_string()});
    let payload = B64URL.encode(claims.to_string());
    let body = format!("{header}.{payload}");
    let sig = sign(&inner.config.sft_jwt_secret, &body);
    (format!("{body}.{sig}"), exp)
}

/// Verifies a JWT of the given kind: signature, `exp` against the sandbox clock.
fn check_jwt(inner: &Inner, token: &str, kind: &str) -> Result<(), &'static str> {
    let mut parts = token.trim().split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("malformed token");
    };
    let provided = B64URL.decode(s).map_err(|_| "malformed token")?;
    let mut mac = HmacSha256::new_from_slice(inner.config.sft_jwt_secret.as_bytes()).expect("any key");
    mac.update(format!("{h}.{p}").as_bytes());
    mac.verify_slice(&provided).map_err(|_| "invalid signature")?;
    let claims: Value = B64URL
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("malformed token")?;
    if claims.get("typ").and_then(Value::as_str) != Some(kind) {
        return Err("wrong token type");
    }
    let exp = claims.get("exp").and_then(Value::as_i64).ok_or("no exp")?;
    if inner.now().timestamp() >= exp {
        return Err("token expired");
    }
    Ok(())
}

fn bearer(req: &Req) -> Option<&str> {
    let v = req
        .header("x-authorization")
        .or_else(|| req.header("authorization"))?;
    Some(
        v.strip_prefix("Bearer ")
            .or(v.strip_prefix("bearer "))
            .unwrap_or(v)
            .trim(),
    )
}

// ---------------------------------------------------------------------------------------------
// Dispatch.

type Handler = fn(&Shared, &Req, &Value) -> Response;

/// Looks for a field in the body, its `Request`, `requestParam`, `Request.requestParam`, and the
/// query string.
fn field(req: &Req, body: &Value, names: &[&str]) -> Option<String> {
    let scopes = [
        Some(body),
        body.get("requestParam"),
        body.get("Request"),
        body.get("Request").and_then(|r| r.get("requestParam")),
    ];
    for scope in scopes.into_iter().flatten() {
        for n in names {
            if let Some(v) = str_field(scope, n) {
                return Some(v);
            }
        }
    }
    names.iter().find_map(|n| req.q(n).map(str::to_owned))
}

async fn dispatch(inner: Shared, endpoint: &'static str, req: Request, auth: bool, h: Handler) -> Response {
    let req = match Req::read(req).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let inner2 = inner.clone();
    inner
        .guarded(endpoint, move || {
            if auth {
                let Some(token) = bearer(&req) else {
                    return unauthorized("Authorization header missing");
                };
                if let Err(why) = check_jwt(&inner2, token, "access") {
                    return unauthorized(why);
                }
            }
            let body = match req.json() {
                Ok(v) => v,
                Err(()) => return fail(1, "Request body is not valid JSON"),
            };
            h(&inner2, &req, &body)
        })
        .await
}

macro_rules! route {
    ($name:ident, $key:literal, $auth:literal, $h:path) => {
        async fn $name(State(inner): State<Shared>, req: Request) -> Response {
            dispatch(inner, $key, req, $auth, $h).await
        }
    };
}

route!(r_login, "sft.login", false, login);
route!(r_refresh, "sft.refresh", false, refresh);
route!(r_fetch, "sft.fetchSIM", true, fetch_sim);
route!(r_lifecycle, "sft.EndPointLifeCycleChange", true, lifecycle);
route!(r_subscribe, "sft.SubscribeAddon", true, subscribe);
route!(r_details, "sft.addonDetails", true, addon_details);

async fn r_details_path(State(inner): State<Shared>, Path(id): Path<String>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let q = match parts.uri.query() {
        Some(q) => format!("{q}&endPointId={id}"),
        None => format!("endPointId={id}"),
    };
    if let Ok(uri) = format!("{}?{q}", parts.uri.path()).parse() {
        parts.uri = uri;
    }
    dispatch(
        inner,
        "sft.addonDetails",
        Request::from_parts(parts, body),
        true,
        addon_details,
    )
    .await
}

pub(crate) fn routes() -> Router<Shared> {
    let p = |s: &str| format!("{BASE}{s}");
    Router::new()
        .route(&p("/api/login"), post(r_login))
        .route(&p("/api/refreshToken"), post(r_refresh))
        .route(&p("/api/refresh"), post(r_refresh))
        .route(&p("/api/fetchSIM"), get(r_fetch).post(r_fetch))
        .route(&p("/api/EndPointLifeCycleChange"), post(r_lifecycle))
        .route(&p("/api/SubscribeAddon"), post(r_subscribe))
        .route(&p("/api/getEndPointAddonDetails"), get(r_details).post(r_details))
        .route(&p("/api/GetEndPointAddonDetails"), get(r_details).post(r_details))
        .route(&p("/api/endpoint/{id}/addons"), get(r_details_path))
}

// ---------------------------------------------------------------------------------------------
// Handlers.

fn tokens(inner: &Shared) -> Response {
    let mut sft = lock(&inner.sft);
    let (access, exp) = make_jwt(inner, &mut sft, "access", inner.config.sft_access_ttl_secs);
    let (refresh, _) = make_jwt(inner, &mut sft, "refresh", inner.config.sft_refresh_ttl_secs);
    let tokens = json!({
        "AccessToken": access,
        "RefreshToken": refresh,
        "expiresIn": inner.config.sft_access_ttl_secs,
        "expiresAt": exp,
        "tokenType": "Bearer",
    });
    // The tokens at the top level (as `esim-upstream` reads them) and, for clients that
    // expect the usual envelope, inside `Response.responseParam` too.
    let mut param = tokens.clone();
    param["rows"] = json!([tokens.clone()]);
    let mut body = tokens;
    body["Response"] = json!({
        "resultCode": 0,
        "resultParam": {"resultDescription": "Success"},
        "responseParam": param,
    });
    util::ok(body)
}

fn login(inner: &Shared, req: &Req, body: &Value) -> Response {
    let user = field(req, body, &["username", "userName"]).unwrap_or_default();
    let pass = field(req, body, &["password"]).unwrap_or_default();
    if user != inner.config.sft_username || pass != inner.config.sft_password {
        return unauthorized("Invalid username or password");
    }
    tokens(inner)
}

fn refresh(inner: &Shared, req: &Req, body: &Value) -> Response {
    let token = field(req, body, &["RefreshToken", "refreshToken", "refresh_token"])
        .or_else(|| bearer(req).map(str::to_owned));
    let Some(token) = token else {
        return unauthorized("Refresh token missing");
    };
    if let Err(why) = check_jwt(inner, &token, "refresh") {
        return unauthorized(why);
    }
    tokens(inner)
}

fn sim_json(s: &SftSim) -> Value {
    json!({
        "endPointId": s.endpoint_id,
        "iccid": s.iccid,
        "eid": s.eid,
        "imsi": s.imsi,
        "msisdn": s.msisdn,
        "simStatusId": s.status,
        "simStatus": status_name(s.status),
        "simAttachStatusId": s.attach,
        "simAttachStatus": if s.attach == ATTACHED { "Attached" } else { "Detached" },
        "activationCode": {"textQrCode": s.qr},
    })
}

fn fetch_sim(inner: &Shared, req: &Req, body: &Value) -> Response {
    let num = |names: &[&str]| field(req, body, names).and_then(|v| v.trim().parse::<u64>().ok());
    let status = num(&["simStatusId"]);
    let attach = num(&["simAttachStatusId"]);
    let iccid = field(req, body, &["iccid"]);
    let page = num(&["page"]).unwrap_or(1).max(1);
    let per_page = num(&["perPage"]).unwrap_or(10).clamp(1, 500);
    let sft = lock(&inner.sft);
    let matching: Vec<&SftSim> = sft
        .sims
        .iter()
        .filter(|s| status.is_none_or(|v| v == s.status))
        .filter(|s| attach.is_none_or(|v| v == s.attach))
        .filter(|s| iccid.as_deref().is_none_or(|i| i == s.iccid))
        .collect();
    let total = matching.len();
    let rows: Vec<Value> = matching
        .into_iter()
        .skip(((page - 1) * per_page) as usize)
        .take(per_page as usize)
        .map(sim_json)
        .collect();
    success(json!({"totalCount": total, "page": page, "perPage": per_page, "rows": rows}))
}

fn endpoint_id(req: &Req, body: &Value) -> Option<u64> {
    field(req, body, &["endPointId", "endpointId", "EndPointId"]).and_then(|v| v.trim().parse().ok())
}

fn lifecycle(inner: &Shared, req: &Req, body: &Value) -> Response {
    let Some(id) = endpoint_id(req, body) else {
        return fail(1, "endPointId is mandatory");
    };
    let Some(lc) = field(req, body, &["lifeCycle", "lifecycle"]) else {
        return fail(1, "lifeCycle is mandatory");
    };
    let mut sft = lock(&inner.sft);
    let Some(sim) = sft.sims.iter_mut().find(|s| s.endpoint_id == id) else {
        return fail(1, "Endpoint not found");
    };
    let desc = match (lc.to_ascii_uppercase().as_str(), sim.status) {
        ("A", ACTIVE) => "Endpoint is already Active",
        ("A", _) => {
            sim.status = ACTIVE;
            "Success"
        }
        ("S", SUSPENDED) => "Endpoint is already Suspended",
        ("S", ACTIVE) => {
            sim.status = SUSPENDED;
            "Success"
        }
        ("S", _) => return fail(1, "Lifecycle change not allowed from Pre-Active to Suspended"),
        _ => return fail(1, "Invalid lifeCycle"),
    };
    let row = sim_json(sim);
    envelope(StatusCode::OK, 0, desc, json!({"rows": [row]}))
}

/// (bytes, days) of a plan id like `PLAN-TRAVEL-3GB-15D`; 1 GB / 7 days otherwise.
fn plan_spec(plan: &str) -> (u64, i64) {
    let mut bytes = 1024 * MB;
    let mut days = 7;
    for part in plan.split(['-', '_']) {
        let up = part.to_ascii_uppercase();
        if let Some(n) = up.strip_suffix("GB").and_then(|n| n.parse::<u64>().ok()) {
            bytes = n * 1024 * MB;
        } else if let Some(n) = up.strip_suffix("MB").and_then(|n| n.parse::<u64>().ok()) {
            bytes = n * MB;
        } else if let Some(n) = up.strip_suffix('D').and_then(|n| n.parse::<i64>().ok()) {
            days = n;
        }
    }
    (bytes, days.max(1))
}

fn plan_name(a: &Addon) -> String {
    let days = (a.end - a.start).num_days();
    let gb = a.total_bytes as f64 / (1024.0 * MB as f64);
    format!("Data {gb} GB / {days} days")
}

fn addon_json(a: &Addon, now: DateTime<Utc>) -> Value {
    let used = a.used(now);
    let status = if a.active(now) {
        "Active"
    } else if now >= a.end {
        "Expired"
    } else {
        "Exhausted"
    };
    json!({
        "uniqueId": a.unique_id,
        "addonInstanceId": a.unique_id,
        "endPointId": a.endpoint_id,
        "planId": a.plan_id,
        "status": status,
        "startDate": a.start.to_rfc3339(),
        "endDate": a.end.to_rfc3339(),
        "validity": {"startDate": a.start.to_rfc3339(), "endDate": a.end.to_rfc3339()},
        "planName": plan_name(a),
        "benefit": plan_name(a),
        "benefitBytes": a.total_bytes,
        "balance": a.total_bytes - used,
        "counters": [{"name": "Data", "used": used, "total": a.total_bytes,
                      "remaining": a.total_bytes - used, "unit": "Bytes"}],
    })
}

fn subscribe(inner: &Shared, req: &Req, body: &Value) -> Response {
    let Some(id) = endpoint_id(req, body) else {
        return fail(1, "endPointId is mandatory");
    };
    let Some(plan) = field(req, body, &["planId"]) else {
        return fail(1, "planId is mandatory");
    };
    if !inner.config.sft_plan_ids.contains(&plan) {
        return fail(1, "Invalid planId");
    }
    let now = inner.now();
    let mut sft = lock(&inner.sft);
    match sft.sims.iter().find(|s| s.endpoint_id == id) {
        None => return fail(1, "Endpoint not found"),
        Some(s) if s.status != ACTIVE => return fail(1, "Endpoint is not Active"),
        Some(_) => {}
    }
    let active = sft
        .addons
        .iter()
        .filter(|a| a.endpoint_id == id && a.active(now))
        .count();
    if active >= inner.config.sft_max_addons {
        return fail(
            1,
            &format!(
                "Maximum of {} active add-ons reached for the endpoint",
                inner.config.sft_max_addons
            ),
        );
    }
    let (bytes, days) = plan_spec(&plan);
    let factor = 0.6 + 0.8 * sft.rng.next_f64();
    let unique_id = format!("{}{:06}", 900_000_000 + sft.rng.below(99_999_999), sft.next_addon);
    sft.next_addon += 1;
    let addon = Addon {
        unique_id,
        endpoint_id: id,
        plan_id: plan,
        total_bytes: bytes,
        start: now,
        end: now + Duration::days(days),
        rate_bps: bytes as f64 / (days as f64 * 86_400.0 * factor),
    };
    let row = addon_json(&addon, now);
    sft.addons.push(addon);
    let mut param = row.clone();
    param["rows"] = json!([row]);
    success(param)
}

fn addon_details(inner: &Shared, req: &Req, body: &Value) -> Response {
    let Some(id) = endpoint_id(req, body) else {
        return fail(1, "endPointId is mandatory");
    };
    let now = inner.now();
    let sft = lock(&inner.sft);
    if !sft.sims.iter().any(|s| s.endpoint_id == id) {
        return fail(1, "Endpoint not found");
    }
    let rows: Vec<Value> = sft
        .addons
        .iter()
        .filter(|a| a.endpoint_id == id)
        .map(|a| addon_json(a, now))
        .collect();
    let balance: u64 = sft
        .addons
        .iter()
        .filter(|a| a.endpoint_id == id && a.active(now))
        .map(|a| a.total_bytes - a.used(now))
        .sum();
    success(json!({"endPointId": id, "balance": balance, "totalCount": rows.len(), "rows": rows}))
}

/// SIMs still Pre-Active and Attached.
pub(crate) fn available(inner: &Inner) -> usize {
    lock(&inner.sft)
        .sims
        .iter()
        .filter(|s| s.status == PRE_ACTIVE && s.attach == ATTACHED)
        .count()
}

/// A summary for the admin state route.
pub(crate) fn summary(inner: &Inner) -> Value {
    let now = inner.now();
    let sft = lock(&inner.sft);
    let mut by: BTreeMap<&'static str, u64> = BTreeMap::new();
    for s in &sft.sims {
        *by.entry(status_name(s.status)).or_default() += 1;
    }
    json!({
        "sims": sft.sims.len(),
        "simsByStatus": by,
        "available": sft.sims.iter().filter(|s| s.status == PRE_ACTIVE && s.attach == ATTACHED).count(),
        "addons": sft.addons.len(),
        "activeAddons": sft.addons.iter().filter(|a| a.active(now)).count(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_specs() {
        assert_eq!(plan_spec("PLAN-TRAVEL-3GB-15D"), (3 * 1024 * MB, 15));
        assert_eq!(plan_spec("1001"), (1024 * MB, 7));
    }
}

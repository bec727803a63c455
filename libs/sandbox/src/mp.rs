//! The MP (LinksField Marketing Place) wholesale API simulator.
//!
//! Orders: `activationCode` creates an order in status "0" (or "1" with `activateFlag`
//! "yes"); `mp_first_use_after_secs` sandbox seconds later the eSIM is "first used" and the
//! order moves to "1" (so does `switchOrder ON`). Validity is `days × cycles`, ending at
//! 23:59:59 (UTC) of its last day; while in "1" usage grows at a per-order rate (seeded: the
//! package's data is used up in about 0.6–1.4 × its validity). The order is "3" when its data or
//! validity ends. `topUp` extends the same order (data and validity by the same number of cycles)
//! and answers a new order code that is an alias of it (queries by either code answer the order).
//! When usage crosses a configured threshold an alarm callback is POSTed to the registered URL,
//! once per tick, carrying the current rate ("53%"), and each threshold is reported once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::SandboxConfig;
use crate::ids::{self, Rng};
use crate::util::{self, Req, str_field, u64_field};
use crate::{Inner, Shared, lock};

/// Bytes per MB (MP reports traffic in MB = 1024 × 1024 bytes).
pub(crate) const MB: u64 = 1024 * 1024;

const BASE: &str = "/mp-api/api/esim";

/// An eSIM profile in MP's inventory.
#[derive(Debug, Clone)]
pub(crate) struct MpEsim {
    pub iccid: String,
    pub eid: String,
    pub qr: String,
}

/// One MP order.
#[derive(Debug, Clone)]
pub(crate) struct MpOrder {
    pub order_code: String,
    pub product_id: u64,
    pub package_code: String,
    pub esim: MpEsim,
    pub cycles: u32,
    pub status: u8,
    pub created_at: DateTime<Utc>,
    pub actual_start: Option<DateTime<Utc>>,
    pub planned_end: Option<DateTime<Utc>>,
    /// Validity in days not yet turned into a `planned_end` (before the start).
    pub days_total: u64,
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub rate_bps: f64,
    pub last_tick: DateTime<Utc>,
    pub daily: BTreeMap<NaiveDate, u64>,
    pub alarms_sent: Vec<u8>,
    pub price: Option<String>,
    pub topups: Vec<String>,
}

/// All MP state.
#[derive(Debug)]
pub(crate) struct MpState {
    rng: Rng,
    smdp: String,
    pub orders: BTreeMap<String, MpOrder>,
    /// Top-up order code → the order it extends.
    pub aliases: HashMap<String, String>,
    /// eSIMs in stock (never ordered yet).
    pub stock: Vec<MpEsim>,
    /// eSIMs that carry or carried an order, by ICCID.
    pub issued: HashMap<String, MpEsim>,
    pub callback_url: Option<String>,
    pub callbacks_sent: Vec<Value>,
    next_callback: u64,
    order_seq: u64,
}

impl MpState {
    pub(crate) fn new(config: &SandboxConfig, mut rng: Rng) -> Self {
        let smdp = config.mp_smdp_fqdn.clone();
        let stock = (0..50).map(|_| new_esim(&mut rng, &smdp)).collect();
        let order_seq = 1_726_522_312_360_550_400 + rng.below(1_000_000_000);
        Self {
            rng,
            smdp,
            orders: BTreeMap::new(),
            aliases: HashMap::new(),
            stock,
            issued: HashMap::new(),
            callback_url: None,
            callbacks_sent: Vec::new(),
            next_callback: 1,
            order_seq,
        }
    }

    fn next_order_code(&mut self) -> String {
        self.order_seq += 1 + self.rng.below(5_000);
        format!("ORDER_{}", self.order_seq)
    }

    fn resolve(&self, code: &str) -> Option<String> {
        if self.orders.contains_key(code) {
            Some(code.to_owned())
        } else {
            self.aliases.get(code).cloned()
        }
    }
}

fn new_esim(rng: &mut Rng, smdp: &str) -> MpEsim {
    MpEsim {
        iccid: ids::iccid(rng, "8985201", 19),
        eid: ids::eid(rng),
        qr: ids::activation_code(rng, smdp),
    }
}

// ---------------------------------------------------------------------------------------------
// Auth: APISIX hmac-auth, old header style.

type HmacSha256 = Hmac<Sha256>;

/// The string APISIX signs: `METHOD\nPATH\nCANONICAL_QUERY\nACCESS_KEY\nDATE\n` +
/// `name:value\n` per signed header.
pub(crate) fn signing_string(
    method: &str,
    path: &str,
    query: &[(String, String)],
    access_key: &str,
    date: &str,
    signed_headers: &[(String, String)],
) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (util::uri_escape(k), util::uri_escape(v)))
        .collect();
    pairs.sort();
    let canonical_query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut s = format!("{method}\n{path}\n{canonical_query}\n{access_key}\n{date}\n");
    for (name, value) in signed_headers {
        s.push_str(name);
        s.push(':');
        s.push_str(value);
        s.push('\n');
    }
    s
}

fn hmac_b64(secret: &str, data: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(data);
    B64.encode(mac.finalize().into_bytes())
}

fn verify(inner: &Inner, req: &Req) -> Result<(), &'static str> {
    let cfg = &inner.config;
    let access_key = req.header("x-hmac-access-key").ok_or("access key missing")?;
    let signature = req.header("x-hmac-signature").ok_or("signature missing")?;
    let algorithm = req.header("x-hmac-algorithm").unwrap_or("hmac-sha256");
    if !algorithm.eq_ignore_ascii_case("hmac-sha256") {
        return Err("algorithm not supported");
    }
    if access_key != cfg.mp_access_key {
        return Err("invalid access key");
    }
    let date = req.header("date").ok_or("date missing")?;
    let when = httpdate::parse_http_date(date).map_err(|_| "invalid date")?;
    let skew = match when.duration_since(std::time::SystemTime::now()) {
        Ok(ahead) => ahead,
        Err(e) => e.duration(),
    };
    if skew.as_secs() > cfg.mp_clock_skew_secs {
        return Err("clock skew exceeded");
    }
    let signed: Vec<(String, String)> = req
        .header("x-hmac-signed-headers")
        .unwrap_or("")
        .split(';')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| (h.to_owned(), req.header(h).unwrap_or("").to_owned()))
        .collect();
    let s = signing_string(
        req.method.as_str(),
        req.uri.path(),
        &req.query,
        access_key,
        date,
        &signed,
    );
    let provided = B64.decode(signature.trim()).map_err(|_| "invalid signature")?;
    let mut mac = HmacSha256::new_from_slice(cfg.mp_secret.as_bytes()).expect("any key");
    mac.update(s.as_bytes());
    mac.verify_slice(&provided).map_err(|_| "invalid signature")?;
    if cfg.mp_require_body_digest {
        let digest = req.header("x-hmac-digest").ok_or("digest missing")?;
        let hmac_digest = hmac_b64(&cfg.mp_secret, &req.body);
        let sha_digest = B64.encode(Sha256::digest(&req.body));
        if digest != hmac_digest && digest != sha_digest {
            return Err("invalid digest");
        }
    }
    Ok(())
}

fn unauthorized() -> Response {
    util::json(
        StatusCode::UNAUTHORIZED,
        json!({"message": "client request can't be validated"}),
    )
}

// ---------------------------------------------------------------------------------------------
// Envelope.

fn envelope(code: u16, msg: Option<&str>, data: Value, request_id: &Option<String>) -> Response {
    util::ok(json!({"code": code, "msg": msg, "data": data, "requestId": request_id}))
}

fn success(data: Value, request_id: &Option<String>) -> Response {
    envelope(200, Some("Success"), data, request_id)
}

fn fail(code: u16, msg: &str, request_id: &Option<String>) -> Response {
    envelope(code, Some(msg), Value::Null, request_id)
}

type Handler = fn(&Shared, &Req, &Value, &Option<String>) -> Response;

/// Whether a handler reads state the sandbox clock drives (usage, statuses, alarms).
#[derive(Clone, Copy, PartialEq)]
enum Clock {
    /// The clock is brought up to now first.
    Read,
    /// It reads none: a tick, which visits every order, would only slow the call.
    Unread,
}

async fn dispatch(inner: Shared, endpoint: &'static str, clock: Clock, req: Request, h: Handler) -> Response {
    let req = match Req::read(req).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let inner2 = inner.clone();
    inner
        .guarded(endpoint, move || {
            if let Err(why) = verify(&inner2, &req) {
                tracing::info!(endpoint, why, "MP signature rejected");
                return unauthorized();
            }
            if clock == Clock::Read {
                inner2.tick();
            }
            let body = if req.method == axum::http::Method::GET {
                Value::Null
            } else {
                match req.json() {
                    Ok(v) => v,
                    Err(()) => return fail(400, "Request body is not valid JSON", &None),
                }
            };
            let request_id = req
                .q("requestId")
                .map(str::to_owned)
                .or_else(|| str_field(&body, "requestId"));
            h(&inner2, &req, &body, &request_id)
        })
        .await
}

macro_rules! route {
    ($name:ident, $key:literal, $clock:ident, $h:path) => {
        async fn $name(State(inner): State<Shared>, req: Request) -> Response {
            dispatch(inner, $key, Clock::$clock, req, $h).await
        }
    };
}

route!(r_product_list, "mp.productList", Unread, product_list);
// A new order, or one onto an issued ICCID (which it looks up, not its orders).
route!(r_activation_code, "mp.activationCode", Unread, activation_code);
route!(r_top_up, "mp.topUp", Read, top_up);
route!(r_order_status, "mp.queryOrderStatus", Read, query_order_status);
route!(r_traffic, "mp.queryTraffic", Read, query_traffic);
route!(r_daily, "mp.queryHistoryDailyTraffic", Read, query_daily);
route!(r_switch, "mp.switchOrder", Read, switch_order);
route!(r_alarm, "mp.saveAlarmCallbackInterface", Unread, save_alarm);

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route(&format!("{BASE}/v2/productList"), get(r_product_list))
        .route(&format!("{BASE}/v2/activationCode"), post(r_activation_code))
        .route(&format!("{BASE}/v2/topUp"), post(r_top_up))
        .route(&format!("{BASE}/queryOrderStatus"), get(r_order_status))
        .route(&format!("{BASE}/queryTraffic"), get(r_traffic))
        .route(&format!("{BASE}/v2/queryHistoryDailyTraffic"), get(r_daily))
        .route(&format!("{BASE}/switchOrder"), post(r_switch))
        .route(&format!("{BASE}/saveAlarmCallbackInterface"), post(r_alarm))
}

// ---------------------------------------------------------------------------------------------
// Handlers.

fn product_list(inner: &Shared, _req: &Req, _body: &Value, rid: &Option<String>) -> Response {
    let rows: Vec<Value> = inner
        .catalog
        .mp
        .iter()
        .map(|p| {
            json!({
                "goodsId": p.goods_id,
                "goodsName": p.goods_name,
                "productId": p.product_id,
                "orderQuantity": p.order_quantity,
                "productName": p.product_name,
                "simGroupCode": p.sim_group_code,
                "simGroupName": p.sim_group_name,
                "coverCountry": p.cover_country,
                "coverCountryName": p.cover_country_name,
            })
        })
        .collect();
    success(Value::Array(rows), rid)
}

fn activation_code(inner: &Shared, _req: &Req, body: &Value, rid: &Option<String>) -> Response {
    let Some(product_id) = u64_field(body, "productId") else {
        return fail(400, "productId must not be null", rid);
    };
    let Some(product) = inner.catalog.mp.iter().find(|p| p.product_id == product_id) else {
        return fail(500, "Product does not exist", rid);
    };
    if let Some(goods) = u64_field(body, "goodsId")
        && goods != product.goods_id
    {
        return fail(500, "Product does not exist", rid);
    }
    let allowed = product.allowed_cycles();
    let cycles = match body.get("orderQuantity") {
        None | Some(Value::Null) => allowed.iter().copied().min().unwrap_or(1),
        Some(_) => match u64_field(body, "orderQuantity") {
            Some(q) if allowed.contains(&(q as u32)) => q as u32,
            _ => return fail(500, "No ICCID found", rid),
        },
    };
    let activate = str_field(body, "activateFlag").is_some_and(|f| f.eq_ignore_ascii_case("yes"));
    let price = str_field(body, "price");
    let now = inner.now();
    let mut mp = lock(&inner.mp);
    let esim = match str_field(body, "iccid").filter(|s| !s.trim().is_empty()) {
        Some(iccid) => {
            let iccid = iccid.trim().trim_end_matches(['F', 'f']).to_owned();
            if let Some(e) = mp.issued.get(&iccid) {
                e.clone()
            } else if let Some(pos) = mp.stock.iter().position(|e| e.iccid == iccid) {
                mp.stock.remove(pos)
            } else {
                return fail(500, "No ICCID found", rid);
            }
        }
        None => {
            if mp.stock.is_empty() {
                let smdp = mp.smdp.clone();
                new_esim(&mut mp.rng, &smdp)
            } else {
                mp.stock.remove(0)
            }
        }
    };
    mp.issued.insert(esim.iccid.clone(), esim.clone());
    let code = mp.next_order_code();
    // Usage rate: the data lasts 0.6–1.4 × the validity.
    let total_bytes = product.data_mb * u64::from(cycles) * MB;
    let days_total = product.days * u64::from(cycles);
    let factor = 0.6 + 0.8 * mp.rng.next_f64();
    let rate_bps = total_bytes as f64 / (days_total as f64 * 86_400.0 * factor);
    let mut order = MpOrder {
        order_code: code.clone(),
        product_id,
        package_code: product.package_code.clone(),
        esim: esim.clone(),
        cycles,
        status: 0,
        created_at: now,
        actual_start: None,
        planned_end: None,
        days_total,
        total_bytes,
        used_bytes: 0,
        rate_bps,
        last_tick: now,
        daily: BTreeMap::new(),
        alarms_sent: Vec::new(),
        price,
        topups: Vec::new(),
    };
    if activate {
        start(&mut order, now);
    }
    mp.orders.insert(code.clone(), order);
    envelope(
        200,
        None,
        json!({"iccid": esim.iccid, "qrCode": esim.qr, "orderCode": code}),
        rid,
    )
}

fn start(order: &mut MpOrder, at: DateTime<Utc>) {
    order.status = 1;
    order.actual_start = Some(at);
    order.last_tick = at;
    let last_day = at.date_naive() + Duration::days(order.days_total.max(1) as i64 - 1);
    let end = last_day.and_time(NaiveTime::from_hms_opt(23, 59, 59).unwrap_or_default());
    order.planned_end = Some(Utc.from_utc_datetime(&end));
}

fn order_code_param(req: &Req, body: &Value) -> Option<String> {
    req.q("orderCode")
        .map(str::to_owned)
        .or_else(|| str_field(body, "orderCode"))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn top_up(inner: &Shared, req: &Req, body: &Value, rid: &Option<String>) -> Response {
    let Some(code) = order_code_param(req, body) else {
        return fail(400, "orderCode must not be null", rid);
    };
    let mut mp = lock(&inner.mp);
    let Some(base) = mp.resolve(&code) else {
        return fail(500, "Order does not exist", rid);
    };
    let new_code = mp.next_order_code();
    let Some(product) = mp
        .orders
        .get(&base)
        .and_then(|o| inner.catalog.mp.iter().find(|p| p.product_id == o.product_id))
    else {
        return fail(500, "Order does not exist", rid);
    };
    let Some(order) = mp.orders.get_mut(&base) else {
        return fail(500, "Order does not exist", rid);
    };
    if order.status == 3 {
        return fail(500, "The order has finished and cannot be topped up", rid);
    }
    let cycles = order.cycles;
    let add_days = product.days * u64::from(cycles);
    order.total_bytes += product.data_mb * u64::from(cycles) * MB;
    order.days_total += add_days;
    if let Some(end) = order.planned_end.as_mut() {
        *end += Duration::days(add_days as i64);
    }
    let pct = used_pct(order);
    order.alarms_sent.retain(|t| u64::from(*t) <= pct);
    order.topups.push(new_code.clone());
    mp.aliases.insert(new_code.clone(), base);
    success(json!({"renewPeriod": cycles, "orderCode": new_code}), rid)
}

fn null_status_row() -> Value {
    json!({"eid": null, "packageCode": null, "status": null, "actualStartTime": null,
           "plannedEndTime": null})
}

fn query_order_status(inner: &Shared, req: &Req, body: &Value, rid: &Option<String>) -> Response {
    let Some(code) = order_code_param(req, body) else {
        return fail(400, "orderCode must not be null", rid);
    };
    let mp = lock(&inner.mp);
    let row = mp
        .resolve(&code)
        .and_then(|c| mp.orders.get(&c))
        .map(|o| {
            json!({
                "eid": o.esim.eid,
                "packageCode": o.package_code,
                "status": o.status.to_string(),
                "actualStartTime": o.actual_start.map(util::mp_time),
                "plannedEndTime": o.planned_end.map(util::mp_time),
            })
        })
        .unwrap_or_else(null_status_row);
    success(json!([row]), rid)
}

/// MB with at most two decimals, as a JSON number.
fn mb(bytes: u64) -> Value {
    let v = (bytes as f64 / MB as f64 * 100.0).round() / 100.0;
    if v.fract() == 0.0 {
        json!(v as u64)
    } else {
        json!(v)
    }
}

fn query_traffic(inner: &Shared, req: &Req, body: &Value, rid: &Option<String>) -> Response {
    let Some(code) = order_code_param(req, body) else {
        return fail(400, "orderCode must not be null", rid);
    };
    let mp = lock(&inner.mp);
    let row = mp
        .resolve(&code)
        .and_then(|c| mp.orders.get(&c))
        .map(|o| {
            json!({
                "eid": o.esim.eid,
                "packageCode": o.package_code,
                "packageFlow": mb(o.total_bytes),
                "packageUsedFlow": mb(o.used_bytes),
                "actualStartTime": o.actual_start.map(util::mp_time),
                "plannedEndTime": o.planned_end.map(util::mp_time),
                "cycle": o.cycles.to_string(),
            })
        })
        .unwrap_or_else(|| {
            json!({"eid": null, "packageCode": null, "packageFlow": null, "packageUsedFlow": null,
                   "actualStartTime": null, "plannedEndTime": null, "cycle": null})
        });
    success(json!([row]), rid)
}

fn query_daily(inner: &Shared, req: &Req, body: &Value, rid: &Option<String>) -> Response {
    let Some(code) = order_code_param(req, body) else {
        return fail(400, "orderCode must not be null", rid);
    };
    let mp = lock(&inner.mp);
    let data = mp
        .resolve(&code)
        .and_then(|c| mp.orders.get(&c))
        .map(|o| {
            let days: Vec<Value> = o
                .daily
                .iter()
                .map(|(d, b)| {
                    json!({"flowUseTime": d.format("%Y-%m-%d").to_string(),
                           "useFlow": b.to_string()})
                })
                .collect();
            json!({
                "packageCode": o.package_code,
                "actualStartTime": o.actual_start.map(util::mp_time),
                "plannedEndTime": o.planned_end.map(util::mp_time),
                "dailyTraffic": days,
            })
        })
        .unwrap_or_else(|| {
            json!({"packageCode": null, "actualStartTime": null, "plannedEndTime": null,
                   "dailyTraffic": [{"flowUseTime": null, "useFlow": null}]})
        });
    success(data, rid)
}

fn switch_order(inner: &Shared, req: &Req, body: &Value, rid: &Option<String>) -> Response {
    let Some(code) = order_code_param(req, body) else {
        return fail(400, "orderCode must not be null", rid);
    };
    let Some(button) = str_field(body, "switchButton") else {
        return fail(400, "switchButton must not be null", rid);
    };
    let now = inner.now();
    let mut mp = lock(&inner.mp);
    let Some(base) = mp.resolve(&code) else {
        return fail(500, "Order does not exist", rid);
    };
    let Some(order) = mp.orders.get_mut(&base) else {
        return fail(500, "Order does not exist", rid);
    };
    let refused = |msg: &str| fail(500, msg, rid);
    match (button.to_ascii_uppercase().as_str(), order.status) {
        (_, 3) => return refused("The order has finished"),
        ("ON", 0) => start(order, now),
        ("ON", 1) => {}
        ("ON", _) => return refused("The order is suspended, use RESTART"),
        ("SUSPEND", 1) => order.status = 2,
        ("SUSPEND", 2) => {}
        ("SUSPEND", _) => return refused("The order is not in use"),
        ("RESTART", 2) => {
            order.status = 1;
            order.last_tick = now;
        }
        ("RESTART", 1) => {}
        ("RESTART", _) => return refused("The order is not suspended"),
        ("OFF", _) => {
            order.status = 3;
            if order.actual_start.is_some() {
                order.planned_end = Some(now);
            }
        }
        _ => return fail(400, "switchButton must be ON, SUSPEND, RESTART or OFF", rid),
    }
    success(Value::Null, rid)
}

fn save_alarm(inner: &Shared, _req: &Req, body: &Value, rid: &Option<String>) -> Response {
    let reseller = str_field(body, "resellerCode").unwrap_or_default();
    if reseller.is_empty() {
        return fail(400, "resellerCode must not be null", rid);
    }
    if reseller != inner.config.mp_access_key {
        return fail(500, "Reseller does not exist", rid);
    }
    let method = str_field(body, "httpMethod").unwrap_or_default();
    if !method.eq_ignore_ascii_case("POST") {
        return fail(400, "httpMethod must be POST", rid);
    }
    let url = str_field(body, "httpUrl").unwrap_or_default();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return fail(400, "httpUrl must be a full http(s) URL", rid);
    }
    lock(&inner.mp).callback_url = Some(url.clone());
    success(Value::String(url), rid)
}

// ---------------------------------------------------------------------------------------------
// Time-driven state and alarm callbacks.

fn used_pct(o: &MpOrder) -> u64 {
    if o.total_bytes == 0 {
        return 0;
    }
    (o.used_bytes as u128 * 100 / o.total_bytes as u128) as u64
}

/// Adds usage from `o.last_tick` to `until`, split by calendar day (UTC).
fn accrue(o: &mut MpOrder, until: DateTime<Utc>) {
    let mut t = o.last_tick;
    while t < until && o.used_bytes < o.total_bytes {
        let next_midnight =
            Utc.from_utc_datetime(&(t.date_naive() + Duration::days(1)).and_time(NaiveTime::MIN));
        let seg_end = next_midnight.min(until);
        let secs = (seg_end - t).num_milliseconds() as f64 / 1000.0;
        let want = (secs * o.rate_bps).round() as u64;
        let add = want.min(o.total_bytes - o.used_bytes);
        if add > 0 {
            o.used_bytes += add;
            *o.daily.entry(t.date_naive()).or_default() += add;
        }
        t = seg_end;
    }
    o.last_tick = until.max(o.last_tick);
}

/// Advances every order to `now`; returns the callbacks to send.
fn advance(inner: &Inner, mp: &mut MpState, now: DateTime<Utc>) -> Vec<Value> {
    let first_use = Duration::seconds(inner.config.mp_first_use_after_secs as i64);
    let mut thresholds = inner.config.alarm_thresholds.clone();
    thresholds.sort_unstable();
    let mut out = Vec::new();
    for o in mp.orders.values_mut() {
        if o.status == 0 && now >= o.created_at + first_use {
            start(o, o.created_at + first_use);
        }
        match o.status {
            1 => {
                let end = o.planned_end.unwrap_or(now);
                accrue(o, now.min(end));
                if o.used_bytes >= o.total_bytes || now >= end {
                    o.status = 3;
                }
            }
            2 => {
                o.last_tick = now;
                if o.planned_end.is_some_and(|end| now >= end) {
                    o.status = 3;
                }
            }
            _ => {}
        }
        let pct = used_pct(o);
        let crossed: Vec<u8> = thresholds
            .iter()
            .copied()
            .filter(|t| u64::from(*t) <= pct && !o.alarms_sent.contains(t))
            .collect();
        if !crossed.is_empty() {
            o.alarms_sent.extend(crossed);
            out.push(json!({
                "eid": o.esim.eid,
                "packageCode": o.package_code,
                "orderCode": o.order_code,
                "packageUsedRate": format!("{}%", pct.min(100)),
            }));
        }
    }
    out
}

pub(crate) fn tick(inner: &Arc<Inner>, now: DateTime<Utc>) {
    let (url, callbacks) = {
        let mut mp = lock(&inner.mp);
        let callbacks = advance(inner, &mut mp, now);
        if callbacks.is_empty() {
            return;
        }
        let url = mp.callback_url.clone();
        let mut with_ids = Vec::new();
        for mut cb in callbacks {
            let id = format!("sandbox-alarm-{}", mp.next_callback);
            mp.next_callback += 1;
            cb["requestId"] = Value::String(id);
            with_ids.push(cb);
        }
        (url, with_ids)
    };
    let Some(url) = url else {
        tracing::debug!("MP alarm threshold crossed but no callback URL registered");
        return;
    };
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no Tokio runtime: MP alarm callbacks dropped");
        return;
    };
    let duplicate = inner
        .peek_fault("mp.alarmCallback")
        .is_some_and(|f| f.duplicate_callbacks);
    let inner = inner.clone();
    handle.spawn(async move {
        for body in callbacks {
            let sends = if duplicate { 2 } else { 1 };
            for _ in 0..sends {
                inner.count("mp.alarmCallback");
                let result = inner.http.post(&url).json(&body).send().await;
                let ok = match result {
                    Ok(r) if r.status().is_success() => true,
                    Ok(r) => {
                        tracing::warn!(status = %r.status(), "MP alarm callback refused");
                        false
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "MP alarm callback failed");
                        false
                    }
                };
                lock(&inner.mp)
                    .callbacks_sent
                    .push(json!({"url": url, "body": body, "ok": ok}));
            }
        }
    });
}

/// What an admin usage update sets.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub(crate) struct UsageUpdate {
    pub used_bytes: Option<u64>,
    pub used_mb: Option<f64>,
    pub rate_bytes_per_sec: Option<f64>,
    pub status: Option<String>,
}

pub(crate) fn set_usage(inner: &Inner, code: &str, u: UsageUpdate) -> bool {
    let now = inner.now();
    let mut mp = lock(&inner.mp);
    let Some(base) = mp.resolve(code) else {
        return false;
    };
    let Some(o) = mp.orders.get_mut(&base) else {
        return false;
    };
    if o.status == 1 {
        let end = o.planned_end.unwrap_or(now);
        accrue(o, now.min(end));
    }
    let used = u.used_bytes.or(u.used_mb.map(|m| (m * MB as f64) as u64));
    if let Some(b) = used {
        if o.status == 0 {
            start(o, now);
        }
        let b = b.min(o.total_bytes);
        if b > o.used_bytes {
            *o.daily.entry(now.date_naive()).or_default() += b - o.used_bytes;
        }
        o.used_bytes = b;
        o.alarms_sent
            .retain(|t| u64::from(*t) <= used_pct_of(b, o.total_bytes));
        o.last_tick = now;
    }
    if let Some(r) = u.rate_bytes_per_sec {
        o.rate_bps = r.max(0.0);
    }
    if let Some(s) = u.status.and_then(|s| s.parse::<u8>().ok()).filter(|s| *s <= 3) {
        if s == 1 && o.actual_start.is_none() {
            start(o, now);
        }
        o.status = s;
        o.last_tick = now;
    }
    true
}

fn used_pct_of(used: u64, total: u64) -> u64 {
    if total == 0 {
        0
    } else {
        (used as u128 * 100 / total as u128) as u64
    }
}

pub(crate) fn order_status(inner: &Inner, code: &str) -> Option<String> {
    let mp = lock(&inner.mp);
    let base = mp.resolve(code)?;
    mp.orders.get(&base).map(|o| o.status.to_string())
}

/// An order's internals, for the admin route.
pub(crate) fn order_json(inner: &Inner, code: &str) -> Option<Value> {
    let mp = lock(&inner.mp);
    let base = mp.resolve(code)?;
    let o = mp.orders.get(&base)?;
    Some(json!({
        "orderCode": o.order_code,
        "topUpCodes": o.topups,
        "productId": o.product_id,
        "packageCode": o.package_code,
        "iccid": o.esim.iccid,
        "eid": o.esim.eid,
        "status": o.status.to_string(),
        "cycles": o.cycles,
        "createdAt": o.created_at.to_rfc3339(),
        "actualStartTime": o.actual_start.map(|t| t.to_rfc3339()),
        "plannedEndTime": o.planned_end.map(|t| t.to_rfc3339()),
        "totalBytes": o.total_bytes,
        "usedBytes": o.used_bytes,
        "usedPercent": used_pct(o),
        "rateBytesPerSec": o.rate_bps,
        "alarmsSent": o.alarms_sent,
        "price": o.price,
    }))
}

/// A summary for the admin state route.
pub(crate) fn summary(inner: &Inner) -> Value {
    let mp = lock(&inner.mp);
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    for o in mp.orders.values() {
        *by_status.entry(o.status.to_string()).or_default() += 1;
    }
    json!({
        "orders": mp.orders.len(),
        "ordersByStatus": by_status,
        "topUps": mp.aliases.len(),
        "stock": mp.stock.len(),
        "callbackUrl": mp.callback_url,
        "callbacksSent": mp.callbacks_sent.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_string_shape() {
        let s = signing_string(
            "GET",
            "/mp-api/api/esim/queryTraffic",
            &[
                ("requestId".into(), "r 1".into()),
                ("orderCode".into(), "ORDER_1".into()),
            ],
            "SG00000010",
            "Tue, 24 Nov 2026 09:00:00 GMT",
            &[
                ("Accept-Language".into(), "en-US".into()),
                ("Content-Type".into(), "application/json".into()),
            ],
        );
        assert_eq!(
            s,
            "GET\n/mp-api/api/esim/queryTraffic\norderCode=ORDER_1&requestId=r%201\nSG00000010\n\
             Tue, 24 Nov 2026 09:00:00 GMT\nAccept-Language:en-US\nContent-Type:application/json\n"
        );
    }
}

//! The FMS (LinksField eSIM QR Mall) simulator, mounted under `/fms`.
//!
//! Every route accepts POST with a JSON body (and GET with query parameters; the two are
//! merged). Envelope `{code, data, message}`, success `code` 0, HTTP 200 even for errors.
//!
//! Codes the sandbox answers: 0 success; 2 bad parameters; 7 token missing, unknown or expired;
//! 1102 time conversion (webhook `dateTime` missing or not seconds); 6006 pre-order timeout;
//! 9999 error (e.g. a second payment notification for the same order); 10001 e-mail already
//! registered; 10002 wrong e-mail or password; 10003 unknown package; 10008 no such order;
//! 10009 price mismatch.
//!
//! Pre-orders: a pre-order reserves a profile (ICCID + activation code) and waits for the
//! payment notification. No notification within `fms_preorder_timeout_secs` (10 min) of
//! sandbox clock: the pre-order is cancelled (`orderPayStatus` 3), the profile released, and a
//! later notification answers 6006. A "succeeded" notification makes `orderPayStatus` 1 (with
//! `qrCode`) `fms_processing_secs` (2 s) of sandbox clock later (0 until then); "failed" makes it
//! 2 at once and releases the profile.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};

use crate::catalog::{COUNTRIES, Catalog, FmsPackage};
use crate::ids::{self, Rng};
use crate::util::{self, Req, f64_field, str_field, u64_field};
use crate::{Inner, Shared, lock};

const BASE: &str = "/fms";

/// An FMS user account.
#[derive(Debug, Clone)]
pub(crate) struct FmsUser {
    pub user_id: u64,
    pub email: String,
    pub passwd: String,
    pub app_id: u64,
}

/// Payment state of a pre-order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PayState {
    /// Waiting for the notification.
    Pending,
    /// Notified as paid; becomes `Paid` after the processing delay.
    Processing { paid_at: DateTime<Utc> },
    /// Paid, profile assigned.
    Paid,
    /// Notified as failed.
    Failed,
    /// Not notified in time.
    Cancelled,
}

impl PayState {
    fn code(self) -> u8 {
        match self {
            Self::Pending | Self::Processing { .. } => 0,
            Self::Paid => 1,
            Self::Failed => 2,
            Self::Cancelled => 3,
        }
    }
}

/// A pre-order.
#[derive(Debug, Clone)]
pub(crate) struct PreOrder {
    pub id: u64,
    pub order_no: String,
    pub email: String,
    pub package: FmsPackage,
    pub package_num: u64,
    pub amount_cents: u64,
    pub created_at: DateTime<Utc>,
    pub state: PayState,
    pub notified: bool,
    pub receive_email: Option<String>,
    pub iccid: String,
    pub qr: String,
    pub client_id: String,
}

/// All FMS state.
#[derive(Debug)]
pub(crate) struct FmsState {
    rng: Rng,
    pub users: HashMap<String, FmsUser>,
    /// token → (e-mail, issued at)
    pub tokens: HashMap<String, (String, DateTime<Utc>)>,
    pub orders: BTreeMap<u64, PreOrder>,
    next_user: u64,
    next_order: u64,
}

impl FmsState {
    pub(crate) fn new(rng: Rng) -> Self {
        Self {
            rng,
            users: HashMap::new(),
            tokens: HashMap::new(),
            orders: BTreeMap::new(),
            next_user: 20_001,
            next_order: 1_055_293,
        }
    }

    fn issue_token(&mut self, email: &str, now: DateTime<Utc>) -> String {
        let token = self.rng.alnum(48).to_ascii_lowercase();
        self.tokens.insert(token.clone(), (email.to_owned(), now));
        token
    }
}

fn envelope(code: u32, message: &str, data: Value) -> Response {
    util::ok(json!({"code": code, "data": data, "message": message}))
}

fn success(data: Value) -> Response {
    envelope(0, "SUCCESS", data)
}

fn bad_params(what: &str) -> Response {
    envelope(2, &format!("Wrong parameters: {what}"), Value::Null)
}

fn token_invalid() -> Response {
    envelope(7, "Token is invalid or expired, please log in again", Value::Null)
}

/// The merged parameters of a request: query pairs, then the JSON body's fields.
fn params(req: &Req) -> Result<Value, ()> {
    let mut map = Map::new();
    for (k, v) in &req.query {
        map.insert(k.clone(), Value::String(v.clone()));
    }
    match req.json()? {
        Value::Object(o) => map.extend(o),
        Value::Null => {}
        _ => return Err(()),
    }
    Ok(Value::Object(map))
}

/// The user of the request's `x-access-token`, if valid.
fn authed(inner: &Inner, fms: &FmsState, req: &Req) -> Option<String> {
    let token = req.header("x-access-token")?.trim();
    let (email, issued) = fms.tokens.get(token)?;
    let ttl = Duration::seconds(inner.config.fms_token_ttl_secs as i64);
    (inner.now() < *issued + ttl).then(|| email.clone())
}

type Handler = fn(&Shared, &Req, &Value) -> Response;

async fn dispatch(inner: Shared, endpoint: &'static str, req: Request, h: Handler) -> Response {
    let req = match Req::read(req).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let inner2 = inner.clone();
    inner
        .guarded(endpoint, move || {
            inner2.tick();
            match params(&req) {
                Ok(p) => h(&inner2, &req, &p),
                Err(()) => bad_params("body is not a JSON object"),
            }
        })
        .await
}

macro_rules! route {
    ($name:ident, $key:literal, $h:path) => {
        async fn $name(State(inner): State<Shared>, req: Request) -> Response {
            dispatch(inner, $key, req, $h).await
        }
    };
}

route!(r_register, "fms.emailRegister", email_register);
route!(r_login, "fms.login", login);
route!(r_reset, "fms.passwordReset", password_reset);
route!(r_countries, "fms.countryPackageList", country_package_list);
route!(r_packages, "fms.packageList", package_list);
route!(r_detail, "fms.detail", detail);
route!(r_preorder, "fms.preOrderPackage", pre_order);
route!(r_webhook, "fms.paymentWebhook", webhook);
route!(r_status, "fms.queryOrdStatusAndEmail", query_status);
route!(r_esim, "fms.myEsimDetail", my_esim_detail);

pub(crate) fn routes() -> Router<Shared> {
    let p = |s: &str| format!("{BASE}{s}");
    Router::new()
        .route(&p("/user/emailRegister"), any(r_register))
        .route(&p("/user/login"), any(r_login))
        .route(&p("/user/emailLogin"), any(r_login))
        .route(&p("/user/passwordReset"), any(r_reset))
        .route(&p("/package/countryPackageList"), any(r_countries))
        .route(&p("/package/packageList"), any(r_packages))
        .route(&p("/package/detail"), any(r_detail))
        .route(&p("/v1.2/package/preOrderPackage"), any(r_preorder))
        .route(&p("/package/preOrderPackage"), any(r_preorder))
        .route(&p("/payment/webhook"), any(r_webhook))
        .route(&p("/v1.1/payment/webhook"), any(r_webhook))
        .route(&p("/package/queryOrdStatusAndEmail"), any(r_status))
        .route(&p("/order/myEsimDetail"), any(r_esim))
}

fn is_md5(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn token_data(user: &FmsUser, token: &str) -> Value {
    json!({
        "token": token,
        "userId": user.user_id,
        "email": user.email,
        "appId": user.app_id,
    })
}

fn token_response(user: &FmsUser, token: &str) -> Response {
    let mut r = success(token_data(user, token));
    if let Ok(v) = axum::http::HeaderValue::from_str(token) {
        r.headers_mut().insert("x-access-token", v);
    }
    r
}

fn email_register(inner: &Shared, _req: &Req, p: &Value) -> Response {
    let email = str_field(p, "email")
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let passwd = str_field(p, "passwd").unwrap_or_default().to_ascii_lowercase();
    let partner = str_field(p, "partnerCode").unwrap_or_default();
    let app_id = u64_field(p, "appId");
    let user_type = u64_field(p, "userType");
    if !email.contains('@') {
        return bad_params("email");
    }
    if !is_md5(&passwd) {
        return bad_params("passwd must be the MD5 hex of the password");
    }
    if partner != inner.config.fms_partner_code {
        return bad_params("partnerCode");
    }
    let Some(app_id) = app_id.filter(|a| [10, 12, 14].contains(a)) else {
        return bad_params("appId");
    };
    if user_type.is_some_and(|t| t != 4) {
        return bad_params("userType");
    }
    let now = inner.now();
    let mut fms = lock(&inner.fms);
    if fms.users.contains_key(&email) {
        return envelope(10001, "The email has been registered", Value::Null);
    }
    let user = FmsUser {
        user_id: fms.next_user,
        email: email.clone(),
        passwd,
        app_id,
    };
    fms.next_user += 1;
    fms.users.insert(email.clone(), user.clone());
    let token = fms.issue_token(&email, now);
    token_response(&user, &token)
}

fn login(inner: &Shared, _req: &Req, p: &Value) -> Response {
    let email = str_field(p, "email")
        .or_else(|| str_field(p, "username"))
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let passwd = str_field(p, "passwd")
        .or_else(|| str_field(p, "password"))
        .unwrap_or_default()
        .to_ascii_lowercase();
    if email.is_empty() || passwd.is_empty() {
        return bad_params("email and passwd are required");
    }
    if let Some(partner) = str_field(p, "partnerCode")
        && partner != inner.config.fms_partner_code
    {
        return bad_params("partnerCode");
    }
    let now = inner.now();
    let mut fms = lock(&inner.fms);
    let Some(user) = fms.users.get(&email).cloned() else {
        return envelope(10002, "Incorrect email or password", Value::Null);
    };
    if user.passwd != passwd {
        return envelope(10002, "Incorrect email or password", Value::Null);
    }
    let token = fms.issue_token(&email, now);
    token_response(&user, &token)
}

fn password_reset(inner: &Shared, req: &Req, p: &Value) -> Response {
    let new = str_field(p, "newPasswd")
        .or_else(|| str_field(p, "passwd"))
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !is_md5(&new) {
        return bad_params("passwd must be the MD5 hex of the new password");
    }
    let mut fms = lock(&inner.fms);
    let by_token = authed(inner, &fms, req);
    let email = match (by_token, str_field(p, "email")) {
        (Some(e), _) => e,
        (None, Some(e)) => {
            // The enterprise backend syncs its users' passwords: its partner code vouches for
            // the request; otherwise the old password must match.
            let e = e.trim().to_ascii_lowercase();
            let partner_ok =
                str_field(p, "partnerCode").as_deref() == Some(inner.config.fms_partner_code.as_str());
            let old = str_field(p, "oldPasswd").unwrap_or_default().to_ascii_lowercase();
            match fms.users.get(&e) {
                Some(u) if partner_ok || u.passwd == old => e,
                _ => return envelope(10002, "Incorrect email or password", Value::Null),
            }
        }
        (None, None) => return token_invalid(),
    };
    let Some(user) = fms.users.get_mut(&email) else {
        return token_invalid();
    };
    user.passwd = new;
    // Changing the password ends the user's sessions.
    fms.tokens.retain(|_, (e, _)| *e != email);
    success(Value::Null)
}

fn price_str(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn price_num(cents: u64) -> Value {
    if cents.is_multiple_of(100) {
        json!(cents / 100)
    } else {
        json!(cents as f64 / 100.0)
    }
}

fn package_json(pk: &FmsPackage) -> Value {
    let country = Catalog::country(&pk.mcc);
    json!({
        "id": pk.id,
        "packageCode": pk.package_code,
        "packageName": pk.package_name,
        "countryCode": pk.mcc,
        "isoCountryName": country.map(|c| c.name),
        "coverCountries": pk.coverage,
        "flow": pk.flow_mb,
        "flowUnit": "MB",
        "days": pk.days,
        "period": pk.period_num,
        "periodNum": pk.period_num,
        "price": price_num(pk.price_cents),
        "currency": pk.currency,
        "currencyId": pk.currency_id,
    })
}

fn require_user(inner: &Shared, req: &Req) -> Result<String, Box<Response>> {
    let fms = lock(&inner.fms);
    authed(inner, &fms, req).ok_or_else(|| Box::new(token_invalid()))
}

fn country_package_list(inner: &Shared, req: &Req, p: &Value) -> Response {
    if let Err(r) = require_user(inner, req) {
        return *r;
    }
    let filter = str_field(p, "countryCode").filter(|c| c != "0" && !c.is_empty());
    let only = u64_field(p, "type") == Some(2);
    let rows: Vec<Value> = COUNTRIES
        .iter()
        .filter(|c| filter.as_deref().is_none_or(|f| f == c.mcc))
        .filter(|c| {
            inner
                .catalog
                .fms
                .iter()
                .any(|pk| pk.coverage.iter().any(|m| m == c.mcc) && (!only || pk.coverage.len() == 1))
        })
        .map(|c| {
            json!({
                "countryCode": c.mcc,
                "countryName": c.name,
                "isoCountryName": c.name,
                "iso2": c.iso2,
            })
        })
        .collect();
    success(Value::Array(rows))
}

fn package_list(inner: &Shared, req: &Req, p: &Value) -> Response {
    if let Err(r) = require_user(inner, req) {
        return *r;
    }
    let mcc = str_field(p, "countryCode")
        .filter(|c| c != "0" && !c.is_empty())
        .or_else(|| {
            let name = str_field(p, "isoCountryName")?;
            COUNTRIES
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(&name))
                .map(|c| c.mcc.to_owned())
        });
    let Some(mcc) = mcc else {
        return bad_params("countryCode");
    };
    let only = u64_field(p, "type") == Some(2);
    let rows: Vec<Value> = inner
        .catalog
        .fms
        .iter()
        .filter(|pk| pk.coverage.contains(&mcc))
        .filter(|pk| !only || pk.coverage.len() == 1)
        .map(package_json)
        .collect();
    success(Value::Array(rows))
}

fn find_package<'a>(inner: &'a Inner, p: &Value) -> Option<&'a FmsPackage> {
    let id = u64_field(p, "id");
    let code = str_field(p, "packageCode");
    inner
        .catalog
        .fms
        .iter()
        .find(|pk| id.is_some_and(|i| i == pk.id) || code.as_deref().is_some_and(|c| c == pk.package_code))
}

fn detail(inner: &Shared, req: &Req, p: &Value) -> Response {
    if let Err(r) = require_user(inner, req) {
        return *r;
    }
    let Some(pk) = find_package(inner, p) else {
        return envelope(10003, "Package does not exist", Value::Null);
    };
    let num = u64_field(p, "orderNum").unwrap_or(1).max(1);
    let mut d = package_json(pk);
    d["orderNum"] = json!(num);
    d["totalPrice"] = price_num(pk.price_cents * num);
    d["currencyInfo"] = json!([{
        "currencyAbbr": pk.currency,
        "currencyId": pk.currency_id,
        "currencySymbol": "$",
        "price": price_num(pk.price_cents),
    }]);
    success(d)
}

fn cents_of(v: f64) -> u64 {
    (v * 100.0).round().max(0.0) as u64
}

fn pre_order(inner: &Shared, req: &Req, p: &Value) -> Response {
    let email = match require_user(inner, req) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    let Some(pk) = find_package(inner, p).cloned() else {
        return envelope(10003, "Package does not exist", Value::Null);
    };
    if let Some(code) = str_field(p, "packageCode")
        && code != pk.package_code
    {
        return bad_params("packageCode does not match id");
    }
    if str_field(p, "partnerCode").as_deref() != Some(inner.config.fms_partner_code.as_str()) {
        return bad_params("partnerCode");
    }
    if let Some(cur) = str_field(p, "currency")
        && !cur.eq_ignore_ascii_case(&pk.currency)
    {
        return bad_params("currency");
    }
    let num = u64_field(p, "packageNum").unwrap_or(1).max(1);
    let Some(money) = f64_field(p, "money") else {
        return bad_params("money");
    };
    let amount = pk.price_cents * num;
    if cents_of(money) != amount {
        return envelope(10009, "Price mismatch", Value::Null);
    }
    let period = u64_field(p, "periodNum").unwrap_or(pk.period_num);
    let now = inner.now();
    let mut fms = lock(&inner.fms);
    let id = fms.next_order;
    fms.next_order += 1 + fms.rng.below(7);
    let order_no = format!("ESIM_L{}{}", now.format("%Y%m%d"), fms.rng.digits(7));
    let iccid = ids::iccid(&mut fms.rng, "8985202", 19);
    let qr = ids::activation_code(&mut fms.rng, &inner.config.fms_smdp_fqdn);
    let client_id = format!("{}_{}", fms.rng.alnum(4), fms.rng.alnum(64));
    let order = PreOrder {
        id,
        order_no: order_no.clone(),
        email,
        package: pk.clone(),
        package_num: num,
        amount_cents: amount,
        created_at: now,
        state: PayState::Pending,
        notified: false,
        receive_email: str_field(p, "receive_qr_email"),
        iccid,
        qr,
        client_id: client_id.clone(),
    };
    fms.orders.insert(id, order);
    success(json!({
        "amount": price_num(amount),
        "id": id,
        "orderNo": order_no,
        "packageName": pk.package_name,
        "orderTime": util::fms_time(now),
        "periodNum": period,
        "currency": pk.currency,
        "clientId": client_id,
    }))
}

fn webhook(inner: &Shared, _req: &Req, p: &Value) -> Response {
    let Some(order_id) = u64_field(p, "orderId") else {
        return bad_params("orderId");
    };
    let kind = str_field(p, "type").unwrap_or_default();
    let succeeded = match kind.as_str() {
        "payment_intent.succeeded" => true,
        "payment_intent.payment_failed" => false,
        _ => return bad_params("type"),
    };
    if let Some(partner) = str_field(p, "partnerCode")
        && partner != inner.config.fms_partner_code
    {
        return bad_params("partnerCode");
    }
    if u64_field(p, "dateTime").is_none() {
        return envelope(1102, "Time conversion exception", Value::Null);
    }
    let now = inner.now();
    let timeout = Duration::seconds(inner.config.fms_preorder_timeout_secs as i64);
    let mut fms = lock(&inner.fms);
    let Some(order) = fms.orders.get_mut(&order_id) else {
        return envelope(10008, "paypal The callback has no order number", Value::Null);
    };
    if order.notified {
        return envelope(9999, "The order has already been notified", Value::Null);
    }
    if order.state == PayState::Cancelled || now > order.created_at + timeout {
        order.state = PayState::Cancelled;
        return envelope(6006, "PreOrder Timeout", Value::Null);
    }
    if succeeded {
        // payAmount in the order's currency units; cents are accepted too.
        let Some(paid) = f64_field(p, "payAmount") else {
            return bad_params("payAmount");
        };
        if cents_of(paid) != order.amount_cents && paid.round() as u64 != order.amount_cents {
            return envelope(10009, "Price mismatch", Value::Null);
        }
        order.state = PayState::Processing { paid_at: now };
    } else {
        order.state = PayState::Failed;
    }
    order.notified = true;
    success(Value::Null)
}

fn own_order(inner: &Shared, req: &Req, p: &Value) -> Result<PreOrder, Box<Response>> {
    let email = require_user(inner, req)?;
    let Some(id) = u64_field(p, "orderId") else {
        return Err(Box::new(bad_params("orderId")));
    };
    let fms = lock(&inner.fms);
    match fms.orders.get(&id) {
        Some(o) if o.email == email => Ok(o.clone()),
        _ => Err(Box::new(envelope(10008, "Order does not exist", Value::Null))),
    }
}

fn query_status(inner: &Shared, req: &Req, p: &Value) -> Response {
    let o = match own_order(inner, req, p) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let status = o.state.code();
    let mut d = json!({
        "orderId": o.id,
        "orderNo": o.order_no,
        "orderPayStatus": status,
        "email": o.receive_email.clone().unwrap_or(o.email.clone()),
        "packageName": o.package.package_name,
        "clientId": o.client_id,
        "qrCode": null,
    });
    if status == 1 {
        d["qrCode"] = json!(o.qr);
    }
    success(d)
}

fn my_esim_detail(inner: &Shared, req: &Req, p: &Value) -> Response {
    let o = match own_order(inner, req, p) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    if o.state != PayState::Paid {
        return envelope(10008, "The order has no eSIM yet", Value::Null);
    }
    let start = o.created_at;
    let end = start + Duration::days((o.package.days * o.package_num) as i64);
    success(json!({
        "orderId": o.id,
        "orderNo": o.order_no,
        "iccid": o.iccid,
        "qrCode": o.qr,
        "packageName": o.package.package_name,
        "packageCode": o.package.package_code,
        "totalFlow": o.package.flow_mb * o.package_num,
        "usedFlow": 0,
        "startTime": util::mp_time(start),
        "endTime": util::mp_time(end),
        "price": price_str(o.amount_cents),
        "currency": o.package.currency,
        "orderTime": util::fms_time(o.created_at),
        "status": 1,
    }))
}

/// Expires unpaid pre-orders and completes processed payments.
pub(crate) fn tick(inner: &Arc<Inner>, now: DateTime<Utc>) {
    let timeout = Duration::seconds(inner.config.fms_preorder_timeout_secs as i64);
    let processing = Duration::seconds(inner.config.fms_processing_secs as i64);
    let mut fms = lock(&inner.fms);
    for o in fms.orders.values_mut() {
        match o.state {
            PayState::Pending if now > o.created_at + timeout => o.state = PayState::Cancelled,
            PayState::Processing { paid_at } if now >= paid_at + processing => {
                o.state = PayState::Paid;
            }
            _ => {}
        }
    }
}

/// A summary for the admin state route.
pub(crate) fn summary(inner: &Inner) -> Value {
    let fms = lock(&inner.fms);
    let mut by: BTreeMap<u8, u64> = BTreeMap::new();
    for o in fms.orders.values() {
        *by.entry(o.state.code()).or_default() += 1;
    }
    json!({
        "users": fms.users.len(),
        "tokens": fms.tokens.len(),
        "preOrders": fms.orders.len(),
        "preOrdersByPayStatus": by,
    })
}

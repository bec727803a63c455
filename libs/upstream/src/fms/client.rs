use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use esim_domain::Secret;
use md5::{Digest, Md5};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::*;
use super::wire;
use crate::config::FmsConfig;
use crate::error::{ErrorKind, FmsCode, Upstream, UpstreamError};
use crate::http::{HttpClient, Idempotency, decode_json};
use crate::wire_common::{NumOrStr, Sensitive};

const UP: Upstream = Upstream::Fms;
/// `userType` of a customer.
const USER_TYPE_CUSTOMER: i64 = 4;

/// What logs a customer in to FMS: e-mail + MD5 hex of the password (FMS only ever sees
/// the MD5, so that is all the suite needs to keep — encrypted at rest).
#[derive(Clone, PartialEq, Eq)]
pub struct FmsCredentials {
    /// The customer's e-mail (also the token cache key).
    pub email: String,
    /// MD5 hex of the password.
    pub passwd_md5: Secret,
}

impl fmt::Debug for FmsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FmsCredentials")
            .field("email", &self.email)
            .field("passwd_md5", &self.passwd_md5)
            .finish()
    }
}

impl FmsCredentials {
    /// From a plain password (hashed here with MD5, as FMS expects).
    pub fn from_plain(email: impl Into<String>, password: &str) -> Self {
        Self {
            email: email.into(),
            passwd_md5: Secret::new(md5_hex(password)),
        }
    }

    /// From an already hashed password.
    pub fn from_md5(email: impl Into<String>, md5_hex: impl Into<String>) -> Self {
        Self {
            email: email.into(),
            passwd_md5: Secret::new(md5_hex.into()),
        }
    }
}

/// Lower-case hex MD5.
pub fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

type Slot = Arc<tokio::sync::Mutex<Option<Secret>>>;

/// The FMS client with its per-user token cache.
///
/// Tokens are cached per customer e-mail. Concurrent calls for one customer share one
/// slot behind an async mutex, so at most one login per customer is in flight. When a call
/// answers code 7 (token expired), the client logs in again — once, even if several calls
/// saw the same expired token — and retries that call once.
pub struct FmsClient {
    cfg: FmsConfig,
    http: HttpClient,
    tokens: Mutex<HashMap<String, Slot>>,
}

impl fmt::Debug for FmsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users = self.tokens.lock().map(|t| t.len()).unwrap_or(0);
        f.debug_struct("FmsClient")
            .field("cfg", &self.cfg)
            .field("cached_users", &users)
            .finish_non_exhaustive()
    }
}

fn decode_err(call: &'static str, mutating: bool, msg: String) -> UpstreamError {
    UpstreamError::new(UP, call, ErrorKind::Decode(msg)).mutating(mutating)
}

impl FmsClient {
    /// Builds the client.
    pub fn new(cfg: FmsConfig) -> Result<Self, UpstreamError> {
        let http = HttpClient::new(UP, cfg.http.clone())?;
        Ok(Self {
            cfg,
            http,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The settings.
    pub fn config(&self) -> &FmsConfig {
        &self.cfg
    }

    /// The transport.
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    fn slot(&self, email: &str) -> Slot {
        let mut map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(email.to_ascii_lowercase()).or_default().clone()
    }

    /// Forgets a customer's token (e.g. after a password change).
    pub fn forget_token(&self, email: &str) {
        let mut map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&email.to_ascii_lowercase());
    }

    async fn raw_post<B: Serialize>(
        &self,
        call: &'static str,
        path: &str,
        token: Option<&Secret>,
        body: &B,
        idem: Idempotency,
        request_id: &str,
    ) -> Result<crate::http::RawResponse, UpstreamError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| UpstreamError::new(UP, call, ErrorKind::Invalid(e.to_string())))?;
        let url = format!("{}{}", self.cfg.base_url.trim_end_matches('/'), path);
        self.http
            .send(call, request_id, idem, |c| {
                let mut rb = c
                    .post(&url)
                    .header("Accept-Language", &self.cfg.language)
                    .header("Content-Type", "application/json")
                    .body(bytes.clone());
                if let Some(t) = token {
                    rb = rb.header(wire::HEADER_TOKEN, t.expose());
                }
                Ok(rb)
            })
            .await
    }

    fn unwrap<T: DeserializeOwned>(
        call: &'static str,
        mutating: bool,
        body: &[u8],
    ) -> Result<Option<T>, UpstreamError> {
        let env: wire::Envelope<T> = decode_json(UP, call, mutating, body)?;
        if env.code != wire::CODE_OK {
            return Err(UpstreamError::new(
                UP,
                call,
                ErrorKind::Upstream {
                    code: env.code,
                    message: env.message.unwrap_or_default(),
                    fms: Some(FmsCode::from_code(env.code)),
                },
            ));
        }
        Ok(env.data)
    }

    fn token_from(call: &'static str, resp: &crate::http::RawResponse) -> Result<Secret, UpstreamError> {
        let data: Option<wire::LoginData> = Self::unwrap(call, false, &resp.body)?;
        if let Some(h) = resp
            .headers
            .get(wire::HEADER_TOKEN)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
        {
            return Ok(Secret::new(h));
        }
        data.and_then(|d| d.token)
            .filter(|t| !t.expose().is_empty())
            .map(|t| Secret::new(t.expose()))
            .ok_or_else(|| {
                UpstreamError::new(
                    UP,
                    call,
                    ErrorKind::Auth("no x-access-token in the answer".into()),
                )
            })
    }

    async fn login_raw(&self, creds: &FmsCredentials, request_id: &str) -> Result<Secret, UpstreamError> {
        const CALL: &str = "login";
        let body = wire::LoginRequest {
            app_id: self.cfg.app_id,
            email: creds.email.clone(),
            partner_code: self.cfg.partner_code.clone(),
            passwd: Sensitive::new(creds.passwd_md5.expose()),
            user_type: USER_TYPE_CUSTOMER,
        };
        let resp = self
            .raw_post(CALL, wire::PATH_LOGIN, None, &body, Idempotency::Read, request_id)
            .await?;
        Self::token_from(CALL, &resp)
    }

    /// `POST /user/login` for a customer; caches and returns nothing (the token stays
    /// inside the client).
    pub async fn login(&self, creds: &FmsCredentials, request_id: &str) -> Result<(), UpstreamError> {
        let slot = self.slot(&creds.email);
        let mut g = slot.lock().await;
        *g = Some(self.login_raw(creds, request_id).await?);
        Ok(())
    }

    /// `POST /user/emailRegister`: creates the customer's FMS account and caches its token.
    pub async fn email_register(
        &self,
        creds: &FmsCredentials,
        request_id: &str,
    ) -> Result<(), UpstreamError> {
        const CALL: &str = "emailRegister";
        let body = wire::EmailRegisterRequest {
            app_id: self.cfg.app_id,
            email: creds.email.clone(),
            partner_code: self.cfg.partner_code.clone(),
            passwd: Sensitive::new(creds.passwd_md5.expose()),
            user_type: USER_TYPE_CUSTOMER,
            verify_code: None,
        };
        let resp = self
            .raw_post(
                CALL,
                wire::PATH_EMAIL_REGISTER,
                None,
                &body,
                Idempotency::Mutation,
                request_id,
            )
            .await?;
        let token = Self::token_from(CALL, &resp).map_err(|e| e.mutating(true))?;
        let slot = self.slot(&creds.email);
        *slot.lock().await = Some(token);
        Ok(())
    }

    /// The cached token, logging in first if there is none (one login per user at once).
    async fn token(
        &self,
        slot: &Slot,
        creds: &FmsCredentials,
        request_id: &str,
    ) -> Result<Secret, UpstreamError> {
        let mut g = slot.lock().await;
        if let Some(t) = g.as_ref() {
            return Ok(t.clone());
        }
        let t = self.login_raw(creds, request_id).await?;
        *g = Some(t.clone());
        Ok(t)
    }

    /// After `stale` was refused: log in again unless another caller already did.
    async fn renew(
        &self,
        slot: &Slot,
        creds: &FmsCredentials,
        stale: &Secret,
        request_id: &str,
    ) -> Result<Secret, UpstreamError> {
        let mut g = slot.lock().await;
        if let Some(t) = g.as_ref()
            && t != stale
        {
            return Ok(t.clone());
        }
        *g = None;
        let t = self.login_raw(creds, request_id).await?;
        *g = Some(t.clone());
        Ok(t)
    }

    /// A call with the customer's token; on code 7 one re-login and one retry.
    async fn authed<B: Serialize, T: DeserializeOwned>(
        &self,
        call: &'static str,
        path: &str,
        creds: &FmsCredentials,
        body: &B,
        idem: Idempotency,
        request_id: &str,
    ) -> Result<Option<T>, UpstreamError> {
        let mutating = idem == Idempotency::Mutation;
        let slot = self.slot(&creds.email);
        let token = self.token(&slot, creds, request_id).await?;
        let resp = self
            .raw_post(call, path, Some(&token), body, idem, request_id)
            .await?;
        match Self::unwrap(call, mutating, &resp.body) {
            Err(e) if e.upstream_code() == Some(wire::CODE_TOKEN_EXPIRED) => {
                tracing::info!(upstream = "FMS", call, "token expired, logging in again");
                let fresh = self.renew(&slot, creds, &token, request_id).await?;
                let resp = self
                    .raw_post(call, path, Some(&fresh), body, idem, request_id)
                    .await?;
                Self::unwrap(call, mutating, &resp.body).map_err(|e| {
                    if e.upstream_code() == Some(wire::CODE_TOKEN_EXPIRED) {
                        UpstreamError::new(
                            UP,
                            call,
                            ErrorKind::Auth("token expired again after a fresh login".into()),
                        )
                    } else {
                        e
                    }
                })
            }
            other => other,
        }
    }

    /// `POST /user/passwordReset`: syncs a changed password (authenticated with the old
    /// credentials), then logs in with the new ones.
    pub async fn password_reset(
        &self,
        old: &FmsCredentials,
        new_passwd_md5: &Secret,
        request_id: &str,
    ) -> Result<(), UpstreamError> {
        let body = wire::PasswordResetRequest {
            email: old.email.clone(),
            partner_code: self.cfg.partner_code.clone(),
            passwd: Sensitive::new(new_passwd_md5.expose()),
        };
        let _: Option<serde_json::Value> = self
            .authed(
                "passwordReset",
                wire::PATH_PASSWORD_RESET,
                old,
                &body,
                Idempotency::Mutation,
                request_id,
            )
            .await?;
        self.forget_token(&old.email);
        let new = FmsCredentials {
            email: old.email.clone(),
            passwd_md5: new_passwd_md5.clone(),
        };
        self.login(&new, request_id).await
    }

    /// `POST /package/countryPackageList`: countries keyed by MCC. `kind`: 1 = plans
    /// covering the country, 2 = covering only it. Authenticated as `creds` (any FMS
    /// account, e.g. a catalogue account).
    pub async fn country_package_list(
        &self,
        creds: &FmsCredentials,
        kind: Option<i64>,
        request_id: &str,
    ) -> Result<Vec<Country>, UpstreamError> {
        const CALL: &str = "countryPackageList";
        let body = wire::PackageListRequest {
            partner_code: self.cfg.partner_code.clone(),
            kind,
            ..Default::default()
        };
        let rows: Vec<wire::CountryRow> = self
            .authed(
                CALL,
                wire::PATH_COUNTRY_PACKAGE_LIST,
                creds,
                &body,
                Idempotency::Read,
                request_id,
            )
            .await?
            .unwrap_or_default();
        rows.into_iter()
            .map(|r| Country::try_from(r).map_err(|m| decode_err(CALL, false, m)))
            .collect()
    }

    /// `POST /package/packageList` for a country (MCC).
    pub async fn package_list(
        &self,
        creds: &FmsCredentials,
        mcc: esim_domain::Mcc,
        kind: Option<i64>,
        request_id: &str,
    ) -> Result<Vec<Package>, UpstreamError> {
        const CALL: &str = "packageList";
        let body = wire::PackageListRequest {
            country_code: Some(i64::from(mcc.value())),
            partner_code: self.cfg.partner_code.clone(),
            kind,
            ..Default::default()
        };
        let rows: Vec<wire::PackageRow> = self
            .authed(
                CALL,
                wire::PATH_PACKAGE_LIST,
                creds,
                &body,
                Idempotency::Read,
                request_id,
            )
            .await?
            .unwrap_or_default();
        rows.into_iter()
            .map(|r| Package::try_from(r).map_err(|m| decode_err(CALL, false, m)))
            .collect()
    }

    /// `POST /package/detail`: `None` when FMS returns no data.
    pub async fn detail(
        &self,
        creds: &FmsCredentials,
        package_id: i64,
        order_num: i64,
        request_id: &str,
    ) -> Result<Option<PackageDetail>, UpstreamError> {
        const CALL: &str = "detail";
        let body = wire::DetailRequest {
            id: package_id,
            order_num,
        };
        let d: Option<wire::PackageDetail> = self
            .authed(
                CALL,
                wire::PATH_DETAIL,
                creds,
                &body,
                Idempotency::Read,
                request_id,
            )
            .await?;
        d.map(|d| PackageDetail::try_from(d).map_err(|m| decode_err(CALL, false, m)))
            .transpose()
    }

    /// `POST /v1.2/package/preOrderPackage`: reserves a profile (never retried blindly).
    pub async fn pre_order(
        &self,
        creds: &FmsCredentials,
        input: &PreOrderInput,
        request_id: &str,
    ) -> Result<PreOrder, UpstreamError> {
        const CALL: &str = "preOrderPackage";
        let body = wire::PreOrderRequest {
            currency: input.money.currency().to_string(),
            currency_id: input.currency_id,
            device_type: "10".into(),
            discount_flag: input.discount_flag,
            id: input.package_id,
            money: input.money.amount(),
            package_code: input.package_code.clone(),
            package_num: input.package_num,
            partner_code: self.cfg.partner_code.clone(),
            period_num: input.period_num,
            receive_qr_email: input.receive_qr_email.clone(),
        };
        let d: wire::PreOrderData = self
            .authed(
                CALL,
                wire::PATH_PRE_ORDER,
                creds,
                &body,
                Idempotency::Mutation,
                request_id,
            )
            .await?
            .ok_or_else(|| decode_err(CALL, true, "data is null".into()))?;
        PreOrder::try_from(d).map_err(|m| decode_err(CALL, true, m))
    }

    /// `POST /payment/webhook` (path from the config): notifies the payment result ONCE.
    /// Branch on `err.fms_code()`: `PreOrderTimeout` (6006) means start over with a new
    /// pre-order; `NoSuchOrder` (10008), `PriceMismatch` (10009).
    pub async fn notify_payment(
        &self,
        creds: &FmsCredentials,
        notice: &PaymentNotice,
        request_id: &str,
    ) -> Result<(), UpstreamError> {
        let body = wire::PaymentWebhookRequest {
            date_time: notice.date_time,
            order_id: NumOrStr::Str(notice.pre_order_id.to_string()),
            partner_code: self.cfg.partner_code.clone(),
            pay_amount: notice.paid.amount(),
            pay_currency: notice.paid.currency().to_string(),
            paypal_id: notice.payment_id.clone(),
            kind: notice.result,
        };
        let path = self.cfg.payment_webhook_path.clone();
        let _: Option<serde_json::Value> = self
            .authed(
                "paymentWebhook",
                &path,
                creds,
                &body,
                Idempotency::Mutation,
                request_id,
            )
            .await?;
        Ok(())
    }

    /// `POST /package/queryOrdStatusAndEmail`: poll about every 2 s while `Waiting`.
    pub async fn query_ord_status_and_email(
        &self,
        creds: &FmsCredentials,
        pre_order_id: i64,
        request_id: &str,
    ) -> Result<OrderPayState, UpstreamError> {
        const CALL: &str = "queryOrdStatusAndEmail";
        let body = wire::OrderIdRequest {
            order_id: NumOrStr::Num(pre_order_id.into()),
        };
        let d: wire::OrderStatusData = self
            .authed(
                CALL,
                wire::PATH_QUERY_ORD_STATUS,
                creds,
                &body,
                Idempotency::Read,
                request_id,
            )
            .await?
            .ok_or_else(|| decode_err(CALL, false, "data is null".into()))?;
        OrderPayState::try_from(d).map_err(|m| decode_err(CALL, false, m))
    }

    /// `POST /order/myEsimDetail`: `None` when FMS returns no data.
    pub async fn my_esim_detail(
        &self,
        creds: &FmsCredentials,
        pre_order_id: i64,
        request_id: &str,
    ) -> Result<Option<EsimDetail>, UpstreamError> {
        const CALL: &str = "myEsimDetail";
        let body = wire::OrderIdRequest {
            order_id: NumOrStr::Num(pre_order_id.into()),
        };
        let d: Option<wire::EsimDetailData> = self
            .authed(
                CALL,
                wire::PATH_MY_ESIM_DETAIL,
                creds,
                &body,
                Idempotency::Read,
                request_id,
            )
            .await?;
        d.filter(|d| d != &wire::EsimDetailData::default())
            .map(|d| EsimDetail::try_from(d).map_err(|m| decode_err(CALL, false, m)))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_and_redaction() {
        assert_eq!(md5_hex("password"), "5f4dcc3b5aa765d61d8327deb882cf99");
        let c = FmsCredentials::from_plain("a@b.c", "password");
        let d = format!("{c:?}");
        assert!(!d.contains("5f4dcc3b"), "{d}");
        assert!(d.contains("a@b.c"));
    }
}

//! The FMS JSON. Request bodies follow the seed (`fms-preorder-v1.2.txt`) and the public
//! `links-field/fms-api` docs; where both are silent (response `data` of login,
//! countryPackageList, packageList, detail, myEsimDetail; the passwordReset and login
//! bodies) the shapes below are our choice, kept in this one file.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::wire_common::{NumOrStr, Sensitive, decimal_number};

/// `POST /user/emailRegister`.
pub const PATH_EMAIL_REGISTER: &str = "/user/emailRegister";
/// `POST /user/login`.
pub const PATH_LOGIN: &str = "/user/login";
/// `POST /user/passwordReset`.
pub const PATH_PASSWORD_RESET: &str = "/user/passwordReset";
/// `POST /package/countryPackageList`.
pub const PATH_COUNTRY_PACKAGE_LIST: &str = "/package/countryPackageList";
/// `POST /package/packageList`.
pub const PATH_PACKAGE_LIST: &str = "/package/packageList";
/// `POST /package/detail`.
pub const PATH_DETAIL: &str = "/package/detail";
/// `POST /v1.2/package/preOrderPackage`.
pub const PATH_PRE_ORDER: &str = "/v1.2/package/preOrderPackage";
/// `POST /payment/webhook` (default; configurable).
pub const PATH_PAYMENT_WEBHOOK: &str = "/payment/webhook";
/// `POST /v1.1/payment/webhook` (listed in the seed's navigation).
pub const PATH_PAYMENT_WEBHOOK_V11: &str = "/v1.1/payment/webhook";
/// `POST /package/queryOrdStatusAndEmail`.
pub const PATH_QUERY_ORD_STATUS: &str = "/package/queryOrdStatusAndEmail";
/// `POST /order/myEsimDetail`.
pub const PATH_MY_ESIM_DETAIL: &str = "/order/myEsimDetail";
/// The token header (request and, after register/login, response).
pub const HEADER_TOKEN: &str = "x-access-token";

/// Success code.
pub const CODE_OK: i64 = 0;
/// Token expired.
pub const CODE_TOKEN_EXPIRED: i64 = 7;

/// The response envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<T> {
    /// 0 on success.
    pub code: i64,
    /// Payload.
    #[serde(default = "none")]
    pub data: Option<T>,
    /// Message.
    #[serde(default)]
    pub message: Option<String>,
    /// Present in the general docs' example; ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_source_handler: Option<serde_json::Value>,
}

fn none<T>() -> Option<T> {
    None
}

/// Body of `/user/emailRegister`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailRegisterRequest {
    /// 12 app, 10 backend, 14 H5.
    pub app_id: i64,
    /// The customer's e-mail.
    pub email: String,
    /// Enterprise code.
    pub partner_code: String,
    /// MD5 hex of the password.
    pub passwd: Sensitive,
    /// 4 = customer.
    pub user_type: i64,
    /// Not in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_code: Option<NumOrStr>,
}

/// Body of `/user/login` (our choice: the register body without `verifyCode`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginRequest {
    /// 12 app, 10 backend, 14 H5.
    pub app_id: i64,
    /// The customer's e-mail.
    pub email: String,
    /// Enterprise code.
    pub partner_code: String,
    /// MD5 hex of the password.
    pub passwd: Sensitive,
    /// 4 = customer.
    pub user_type: i64,
}

/// `data` of register/login (our choice). The docs say the token "will be returned in the
/// response": the client takes the `x-access-token` response header first, then
/// `data.token` (also read from `x-access-token` or `accessToken`).
///
/// The spellings are separate fields on input (not serde aliases, which fail with
/// "duplicate field" when an upstream sends two of them): the first non-empty of `token`,
/// `x-access-token`, `accessToken` wins.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "LoginDataIn")]
pub struct LoginData {
    /// The token.
    #[serde(default)]
    pub token: Option<Sensitive>,
    /// FMS user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<NumOrStr>,
    /// E-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// What [`LoginData`] is read from: every spelling of the token as its own field.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginDataIn {
    #[serde(default)]
    token: Option<Sensitive>,
    #[serde(default, rename = "x-access-token")]
    x_access_token: Option<Sensitive>,
    #[serde(default)]
    access_token: Option<Sensitive>,
    #[serde(default)]
    user_id: Option<NumOrStr>,
    #[serde(default)]
    email: Option<String>,
}

impl From<LoginDataIn> for LoginData {
    fn from(w: LoginDataIn) -> Self {
        Self {
            token: first_present([w.token, w.x_access_token, w.access_token]),
            user_id: w.user_id,
            email: w.email,
        }
    }
}

/// The first value that is present and not blank (else the first present one).
fn first_present<const N: usize>(values: [Option<Sensitive>; N]) -> Option<Sensitive> {
    let mut fallback = None;
    for v in values.into_iter().flatten() {
        if !v.expose().trim().is_empty() {
            return Some(v);
        }
        fallback.get_or_insert(v);
    }
    fallback
}

/// Body of `/user/passwordReset` (our choice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordResetRequest {
    /// The customer's e-mail.
    pub email: String,
    /// Enterprise code.
    pub partner_code: String,
    /// MD5 hex of the **new** password.
    pub passwd: Sensitive,
}

/// Body of `/package/countryPackageList` and `/package/packageList`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageListRequest {
    /// Country as an MCC number (460).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_code: Option<i64>,
    /// Country name (packageList; `countryCode` wins when both are set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iso_country_name: Option<String>,
    /// Deprecated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language_id: Option<String>,
    /// Not in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_num: Option<i64>,
    /// Not in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<i64>,
    /// Enterprise code.
    pub partner_code: String,
    /// 1 = plans covering this country, 2 = plans covering only this country.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<i64>,
}

/// One country of `countryPackageList` (our choice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CountryRow {
    /// MCC (number or string).
    pub country_code: NumOrStr,
    /// Display name.
    #[serde(default)]
    pub country_name: Option<String>,
    /// English ISO name.
    #[serde(default)]
    pub iso_country_name: Option<String>,
    /// Flag/picture URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
}

/// One package of `packageList` (our choice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageRow {
    /// Package id (`id` of detail / pre-order).
    pub id: i64,
    /// Package code ("LP20220325000000").
    pub package_code: String,
    /// Name.
    #[serde(default)]
    pub package_name: Option<String>,
    /// Data volume in MB.
    #[serde(default)]
    pub flow: Option<NumOrStr>,
    /// Validity in days.
    #[serde(default)]
    pub days: Option<NumOrStr>,
    /// Price.
    #[serde(default)]
    pub price: Option<NumOrStr>,
    /// Currency ("USD").
    #[serde(default)]
    pub currency: Option<String>,
}

/// Body of `/package/detail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DetailRequest {
    /// Package id.
    pub id: i64,
    /// How many of the package.
    pub order_num: i64,
}

/// A price of a package in one currency (`currencyInfo` of detail).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrencyInfo {
    /// "USD" — the pre-order's `currency`.
    pub currency_abbr: String,
    /// The pre-order's `currencyId`.
    pub currency_id: i64,
    /// Price in this currency — the pre-order's `money`.
    #[serde(default)]
    pub price: Option<NumOrStr>,
}

/// `data` of `/package/detail` (docs: `currencyInfo` and `period`; the rest our choice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageDetail {
    /// Package id.
    pub id: i64,
    /// Package code.
    pub package_code: String,
    /// Name.
    #[serde(default)]
    pub package_name: Option<String>,
    /// The pre-order's `periodNum`.
    pub period: i64,
    /// Data volume in MB.
    #[serde(default)]
    pub flow: Option<NumOrStr>,
    /// Validity in days.
    #[serde(default)]
    pub days: Option<NumOrStr>,
    /// Prices.
    #[serde(default)]
    pub currency_info: Vec<CurrencyInfo>,
}

/// Body of `/v1.2/package/preOrderPackage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreOrderRequest {
    /// `currencyAbbr` from the detail.
    pub currency: String,
    /// `currencyId` from the detail.
    pub currency_id: i64,
    /// Always "10".
    pub device_type: String,
    /// Discount flag (0).
    pub discount_flag: i64,
    /// Package id.
    pub id: i64,
    /// Amount (a JSON number).
    #[serde(with = "decimal_number")]
    pub money: Decimal,
    /// Package code.
    pub package_code: String,
    /// Number of packages.
    pub package_num: i64,
    /// Enterprise code.
    pub partner_code: String,
    /// `period` from the detail.
    pub period_num: i64,
    /// Where FMS e-mails the QR.
    #[serde(default, rename = "receive_qr_email", skip_serializing_if = "Option::is_none")]
    pub receive_qr_email: Option<String>,
}

/// `data` of the pre-order (seed example).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreOrderData {
    /// Amount.
    pub amount: NumOrStr,
    /// The pre-order id (`orderId` of the webhook and status calls).
    pub id: i64,
    /// Order number.
    pub order_no: String,
    /// Package name.
    #[serde(default)]
    pub package_name: Option<String>,
    /// "2022-12-05T03:14:50.958+0000".
    pub order_time: String,
    /// Periods.
    #[serde(default)]
    pub period_num: Option<i64>,
    /// Currency.
    pub currency: String,
    /// Payment client secret (credential: redacted in `Debug`).
    #[serde(default)]
    pub client_id: Option<Sensitive>,
}

/// `type` of the payment notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentResult {
    /// `payment_intent.succeeded`.
    #[serde(rename = "payment_intent.succeeded")]
    Succeeded,
    /// `payment_intent.payment_failed`.
    #[serde(rename = "payment_intent.payment_failed")]
    Failed,
}

/// Body of `/payment/webhook`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentWebhookRequest {
    /// Transaction time, seconds.
    pub date_time: i64,
    /// The pre-order id (docs type it as a string; we send a string, accept both).
    pub order_id: NumOrStr,
    /// Enterprise code.
    pub partner_code: String,
    /// Amount paid (a JSON number).
    #[serde(with = "decimal_number")]
    pub pay_amount: Decimal,
    /// Currency paid.
    pub pay_currency: String,
    /// The payment provider's transaction id.
    pub paypal_id: String,
    /// Result.
    #[serde(rename = "type")]
    pub kind: PaymentResult,
}

/// Body of `queryOrdStatusAndEmail` and `myEsimDetail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderIdRequest {
    /// The pre-order id.
    pub order_id: NumOrStr,
}

/// `data` of `queryOrdStatusAndEmail`. The flow text names the field `orderPayStatus`,
/// the API page's example `orderStatus`: either or both are accepted (read as separate
/// fields, not a serde alias, so both at once is not a "duplicate field"); `orderPayStatus`
/// wins when both are present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "OrderStatusDataIn")]
pub struct OrderStatusData {
    /// 0 waiting, 1 paid, 2 failed, 3 cancelled.
    pub order_pay_status: i64,
    /// The LPA string once paid (credential).
    #[serde(default)]
    pub qr_code: Option<Sensitive>,
}

/// What [`OrderStatusData`] is read from.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderStatusDataIn {
    #[serde(default)]
    order_pay_status: Option<i64>,
    #[serde(default)]
    order_status: Option<i64>,
    #[serde(default)]
    qr_code: Option<Sensitive>,
}

impl TryFrom<OrderStatusDataIn> for OrderStatusData {
    type Error = &'static str;
    fn try_from(w: OrderStatusDataIn) -> Result<Self, Self::Error> {
        Ok(Self {
            order_pay_status: w
                .order_pay_status
                .or(w.order_status)
                .ok_or("missing field `orderPayStatus` (or `orderStatus`)")?,
            qr_code: w.qr_code,
        })
    }
}

/// `data` of `myEsimDetail` (our choice).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EsimDetailData {
    /// Order number.
    #[serde(default)]
    pub order_no: Option<String>,
    /// ICCID.
    #[serde(default)]
    pub iccid: Option<String>,
    /// LPA string (credential).
    #[serde(default)]
    pub qr_code: Option<Sensitive>,
    /// Package name.
    #[serde(default)]
    pub package_name: Option<String>,
    /// Package code.
    #[serde(default)]
    pub package_code: Option<String>,
    /// Data volume in MB.
    #[serde(default)]
    pub total_flow: Option<NumOrStr>,
    /// Used data in MB.
    #[serde(default)]
    pub used_flow: Option<NumOrStr>,
    /// "YYYY-MM-DD HH:MM:SS".
    #[serde(default)]
    pub start_time: Option<String>,
    /// "YYYY-MM-DD HH:MM:SS".
    #[serde(default)]
    pub end_time: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_data_accepts_every_token_spelling_alone_and_together() {
        for body in [
            r#"{"token":"T1"}"#,
            r#"{"x-access-token":"T1"}"#,
            r#"{"accessToken":"T1"}"#,
            // Both spellings at once (a serde alias fails here with "duplicate field").
            r#"{"token":"T1","x-access-token":"T1"}"#,
            r#"{"x-access-token":"T1","token":"T1","accessToken":"T1","userId":7}"#,
            r#"{"token":"","x-access-token":"T1"}"#,
        ] {
            let d: LoginData = serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(d.token.as_ref().map(Sensitive::expose), Some("T1"), "{body}");
        }
        let d: LoginData = serde_json::from_str(r#"{"token":"A","x-access-token":"B"}"#).unwrap();
        assert_eq!(d.token.unwrap().expose(), "A", "`token` wins");
        let d: LoginData = serde_json::from_str(r#"{"email":"a@b.c"}"#).unwrap();
        assert_eq!(d.token, None);
        assert_eq!(d.email.as_deref(), Some("a@b.c"));
        // Serialising writes the canonical name only, and reads back the same.
        let d = LoginData {
            token: Some("T".into()),
            ..Default::default()
        };
        let j = serde_json::to_string(&d).unwrap();
        assert_eq!(j, r#"{"token":"T"}"#);
        assert_eq!(serde_json::from_str::<LoginData>(&j).unwrap(), d);
    }

    #[test]
    fn order_status_accepts_both_field_names_together() {
        let d: OrderStatusData =
            serde_json::from_str(r#"{"orderPayStatus":1,"orderStatus":1,"qrCode":"LPA:1$a.b$C"}"#).unwrap();
        assert_eq!(d.order_pay_status, 1);
        let d: OrderStatusData = serde_json::from_str(r#"{"orderStatus":2,"orderPayStatus":0}"#).unwrap();
        assert_eq!(d.order_pay_status, 0, "`orderPayStatus` wins");
        let d: OrderStatusData = serde_json::from_str(r#"{"orderStatus":3}"#).unwrap();
        assert_eq!(d.order_pay_status, 3);
        let e = serde_json::from_str::<OrderStatusData>(r#"{"qrCode":null}"#).unwrap_err();
        assert!(e.to_string().contains("orderPayStatus"), "{e}");
        let j = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<OrderStatusData>(&j).unwrap(), d);
    }
}

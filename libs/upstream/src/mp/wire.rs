//! The MP JSON exactly as the seed (`mp-wholesale-api.txt`) documents it. Field names are
//! camelCase; every field the seed shows as nullable is an `Option`. The sandbox reuses
//! these types to parse our requests and build its responses.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::wire_common::{NumOrStr, Sensitive, decimal_number};

/// The path prefix of every MP call.
pub const BASE_PATH: &str = "/mp-api/api/esim/";
/// `GET v2/productList`.
pub const PATH_PRODUCT_LIST: &str = "/mp-api/api/esim/v2/productList";
/// `POST v2/activationCode`.
pub const PATH_ACTIVATION_CODE: &str = "/mp-api/api/esim/v2/activationCode";
/// `POST v2/topUp`.
pub const PATH_TOP_UP: &str = "/mp-api/api/esim/v2/topUp";
/// `GET queryOrderStatus`.
pub const PATH_QUERY_ORDER_STATUS: &str = "/mp-api/api/esim/queryOrderStatus";
/// `GET queryTraffic`.
pub const PATH_QUERY_TRAFFIC: &str = "/mp-api/api/esim/queryTraffic";
/// `GET v2/queryHistoryDailyTraffic`.
pub const PATH_QUERY_HISTORY_DAILY_TRAFFIC: &str = "/mp-api/api/esim/v2/queryHistoryDailyTraffic";
/// `POST switchOrder`.
pub const PATH_SWITCH_ORDER: &str = "/mp-api/api/esim/switchOrder";
/// `POST saveAlarmCallbackInterface`.
pub const PATH_SAVE_ALARM_CALLBACK: &str = "/mp-api/api/esim/saveAlarmCallbackInterface";

/// The success `code`.
pub const CODE_OK: i64 = 200;

/// The response envelope of every call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<T> {
    /// 200 on success.
    pub code: i64,
    /// Message (may be null).
    #[serde(default)]
    pub msg: Option<String>,
    /// Payload (null for `switchOrder` and on errors).
    #[serde(default = "none")]
    pub data: Option<T>,
    /// Our `requestId`, echoed (often null).
    #[serde(default)]
    pub request_id: Option<String>,
}

fn none<T>() -> Option<T> {
    None
}

/// Query of `productList`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestIdQuery {
    /// For logging, up to 500 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Query of `queryOrderStatus`, `queryTraffic`, `v2/queryHistoryDailyTraffic`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCodeQuery {
    /// The MP order code.
    pub order_code: String,
    /// For logging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// One row of `productList`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    /// Country coverage id.
    pub goods_id: i64,
    /// Country coverage name.
    #[serde(default)]
    pub goods_name: Option<String>,
    /// Specification (product) id.
    pub product_id: i64,
    /// Allowed cycle counts, comma-separated ("3,4").
    #[serde(default)]
    pub order_quantity: Option<String>,
    /// Product name.
    #[serde(default)]
    pub product_name: Option<String>,
    /// SIM group code.
    #[serde(default)]
    pub sim_group_code: Option<String>,
    /// SIM group name.
    #[serde(default)]
    pub sim_group_name: Option<String>,
    /// Covered country as an **MCC** ("460").
    #[serde(default)]
    pub cover_country: Option<String>,
    /// Covered country name.
    #[serde(default)]
    pub cover_country_name: Option<String>,
}

/// Body of `v2/activationCode` (create order + QR).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivationCodeRequest {
    /// Country coverage id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goods_id: Option<i64>,
    /// Product id (required).
    pub product_id: i64,
    /// Number of cycles (default: the product's minimum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_quantity: Option<u32>,
    /// Order onto this eSIM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iccid: Option<String>,
    /// Resale price (a JSON number).
    #[serde(
        default,
        with = "decimal_number::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub price: Option<Decimal>,
    /// "yes" / "no".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activate_flag: Option<String>,
    /// For logging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `data` of `v2/activationCode`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivationCodeData {
    /// The eSIM's ICCID.
    #[serde(default)]
    pub iccid: Option<String>,
    /// The LPA activation code (a credential: redacted in `Debug`).
    #[serde(default)]
    pub qr_code: Option<Sensitive>,
    /// The MP order code.
    #[serde(default)]
    pub order_code: Option<String>,
}

/// Body of `v2/topUp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopUpRequest {
    /// The order to top up.
    pub order_code: String,
    /// For logging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `data` of `v2/topUp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopUpData {
    /// Periods added.
    #[serde(default)]
    pub renew_period: Option<NumOrStr>,
    /// The new order code.
    #[serde(default)]
    pub order_code: Option<String>,
}

/// One row of `queryOrderStatus` (all null = nothing found).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderStatusRow {
    /// EID (the seed's example holds a 20-digit ICCID here).
    #[serde(default)]
    pub eid: Option<String>,
    /// Package code.
    #[serde(default)]
    pub package_code: Option<String>,
    /// "0" not enabled, "1" in use, "2" suspended, "3" finished.
    #[serde(default)]
    pub status: Option<String>,
    /// "YYYY-MM-DD HH:MM:SS".
    #[serde(default)]
    pub actual_start_time: Option<String>,
    /// "YYYY-MM-DD HH:MM:SS".
    #[serde(default)]
    pub planned_end_time: Option<String>,
}

/// One row of `queryTraffic` (all null = nothing found).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficRow {
    /// EID.
    #[serde(default)]
    pub eid: Option<String>,
    /// Package code.
    #[serde(default)]
    pub package_code: Option<String>,
    /// Total traffic in **MB** (number or string).
    #[serde(default)]
    pub package_flow: Option<NumOrStr>,
    /// Used traffic in **MB** (number or string).
    #[serde(default)]
    pub package_used_flow: Option<NumOrStr>,
    /// "YYYY-MM-DD HH:MM:SS".
    #[serde(default)]
    pub actual_start_time: Option<String>,
    /// "YYYY-MM-DD HH:MM:SS".
    #[serde(default)]
    pub planned_end_time: Option<String>,
    /// Order period in months ("1").
    #[serde(default)]
    pub cycle: Option<NumOrStr>,
}

/// `data` of `v2/queryHistoryDailyTraffic`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyTrafficData {
    /// Package code.
    #[serde(default)]
    pub package_code: Option<String>,
    /// "YYYY-MM-DD HH:MM:SS".
    #[serde(default)]
    pub actual_start_time: Option<String>,
    /// "YYYY-MM-DD HH:MM:SS".
    #[serde(default)]
    pub planned_end_time: Option<String>,
    /// One entry per day.
    #[serde(default)]
    pub daily_traffic: Vec<DailyTrafficRow>,
}

/// One day of `dailyTraffic`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyTrafficRow {
    /// "YYYY-MM-DD".
    #[serde(default)]
    pub flow_use_time: Option<String>,
    /// Bytes used that day, as a string ("120000").
    #[serde(default)]
    pub use_flow: Option<NumOrStr>,
}

/// `switchButton` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SwitchButton {
    /// Enable the order.
    On,
    /// Suspend (pause) it.
    Suspend,
    /// Re-enable a suspended order.
    Restart,
    /// End it.
    Off,
}

/// Body of `switchOrder`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SwitchOrderRequest {
    /// The order.
    pub order_code: String,
    /// ON / SUSPEND / RESTART / OFF.
    pub switch_button: SwitchButton,
    /// For logging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Body of `saveAlarmCallbackInterface`. `data` of the answer is the saved URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaveAlarmCallbackRequest {
    /// Reseller code.
    pub reseller_code: String,
    /// Always "POST".
    pub http_method: String,
    /// Our full callback URL.
    pub http_url: String,
    /// For logging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The body MP POSTs to our alarm callback URL when usage crosses a threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmCallback {
    /// EID.
    pub eid: String,
    /// Package code.
    pub package_code: String,
    /// Order code.
    pub order_code: String,
    /// "53%", "84%", "100%".
    pub package_used_rate: String,
    /// For logging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

//! Typed MP results, decoded honestly from [`super::wire`]: MB and byte strings to bytes
//! (`u64`; **1 MB = 1024 × 1024 bytes**, the binary megabyte operators bill in), statuses to
//! enums, identifiers to `esim-domain` types, times to `chrono` (MP sends local platform
//! time without a zone, so they stay `NaiveDateTime`), and all-null rows to "not found".

use chrono::{NaiveDate, NaiveDateTime};
use esim_domain::{ActivationCode, Eid, Iccid, Mcc};
use rust_decimal::Decimal;

use super::wire;
use crate::wire_common::NumOrStr;

/// Bytes in one MB as MP counts them.
pub const BYTES_PER_MB: u64 = 1024 * 1024;

/// A decoding problem with a field (turned into `ErrorKind::Decode` by the client).
pub type FieldError = String;

/// One product (specification) of the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    /// Country coverage id (`goodsId`).
    pub goods_id: i64,
    /// Country coverage name.
    pub goods_name: Option<String>,
    /// Product id.
    pub product_id: i64,
    /// Product name.
    pub product_name: Option<String>,
    /// Allowed cycle counts (`orderQuantity` "3,4" → [3, 4]).
    pub allowed_cycle_counts: Vec<u32>,
    /// SIM group code.
    pub sim_group_code: Option<String>,
    /// SIM group name.
    pub sim_group_name: Option<String>,
    /// Covered country as an MCC (`coverCountry` "460").
    pub cover_mcc: Option<Mcc>,
    /// Covered country name.
    pub cover_country_name: Option<String>,
}

impl TryFrom<wire::Product> for Product {
    type Error = FieldError;
    fn try_from(w: wire::Product) -> Result<Self, FieldError> {
        let allowed_cycle_counts = match w.order_quantity.as_deref().map(str::trim) {
            None | Some("") => Vec::new(),
            Some(s) => s
                .split(',')
                .map(|p| {
                    p.trim()
                        .parse::<u32>()
                        .map_err(|_| format!("orderQuantity {s:?} is not a list of counts"))
                })
                .collect::<Result<_, _>>()?,
        };
        let cover_mcc = w
            .cover_country
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.parse::<Mcc>().map_err(|e| format!("coverCountry: {e}")))
            .transpose()?;
        Ok(Self {
            goods_id: w.goods_id,
            goods_name: w.goods_name,
            product_id: w.product_id,
            product_name: w.product_name,
            allowed_cycle_counts,
            sim_group_code: w.sim_group_code,
            sim_group_name: w.sim_group_name,
            cover_mcc,
            cover_country_name: w.cover_country_name,
        })
    }
}

/// What to order with `activationCode`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CreateOrder {
    /// Product id (required).
    pub product_id: i64,
    /// Country coverage id.
    pub goods_id: Option<i64>,
    /// Cycle count (must be one of the product's allowed counts, or MP answers
    /// "No ICCID found").
    pub cycles: Option<u32>,
    /// Order onto this eSIM.
    pub iccid: Option<Iccid>,
    /// Resale price.
    pub price: Option<Decimal>,
    /// `activateFlag` yes/no.
    pub activate: Option<bool>,
}

/// A created order with its eSIM.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedOrder {
    /// The eSIM.
    pub iccid: Iccid,
    /// The activation code (credential; redacted in `Debug`).
    pub activation_code: ActivationCode,
    /// MP's order code.
    pub order_code: String,
}

impl TryFrom<wire::ActivationCodeData> for CreatedOrder {
    type Error = FieldError;
    fn try_from(w: wire::ActivationCodeData) -> Result<Self, FieldError> {
        let iccid = w.iccid.ok_or("iccid is missing")?;
        let iccid = iccid.parse().map_err(|e| format!("iccid: {e}"))?;
        let qr = w.qr_code.ok_or("qrCode is missing")?;
        let activation_code = qr.expose().parse().map_err(|e| format!("qrCode: {e}"))?;
        let order_code = non_empty(w.order_code).ok_or("orderCode is missing")?;
        Ok(Self {
            iccid,
            activation_code,
            order_code,
        })
    }
}

/// The result of a top-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopUp {
    /// Periods added.
    pub renew_period: u32,
    /// The new order code.
    pub order_code: String,
}

impl TryFrom<wire::TopUpData> for TopUp {
    type Error = FieldError;
    fn try_from(w: wire::TopUpData) -> Result<Self, FieldError> {
        let renew_period = w
            .renew_period
            .as_ref()
            .and_then(NumOrStr::to_u64)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or("renewPeriod is missing or not a count")?;
        let order_code = non_empty(w.order_code).ok_or("orderCode is missing")?;
        Ok(Self {
            renew_period,
            order_code,
        })
    }
}

/// MP order status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    /// "0": not enabled yet.
    NotEnabled,
    /// "1": in use.
    InUse,
    /// "2": suspended.
    Suspended,
    /// "3": finished (no top-up possible).
    Finished,
}

impl OrderStatus {
    /// Parses "0".."3".
    pub fn from_code(s: &str) -> Option<Self> {
        match s.trim() {
            "0" => Some(Self::NotEnabled),
            "1" => Some(Self::InUse),
            "2" => Some(Self::Suspended),
            "3" => Some(Self::Finished),
            _ => None,
        }
    }

    /// The wire code.
    pub fn code(self) -> &'static str {
        match self {
            Self::NotEnabled => "0",
            Self::InUse => "1",
            Self::Suspended => "2",
            Self::Finished => "3",
        }
    }
}

/// What MP puts in its `eid` field. The seed's example carries a 20-digit **ICCID**
/// ("89491202308310000235", Luhn-valid) where the docs say EID, so both are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EsimRef {
    /// A valid 32-digit EID.
    Eid(Eid),
    /// A valid ICCID.
    Iccid(Iccid),
    /// Neither; kept verbatim.
    Unrecognised(String),
}

impl EsimRef {
    /// Classifies a value.
    pub fn parse(s: &str) -> Self {
        if let Ok(e) = s.parse() {
            Self::Eid(e)
        } else if let Ok(i) = s.parse() {
            Self::Iccid(i)
        } else {
            Self::Unrecognised(s.to_owned())
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Eid(e) => e.as_str(),
            Self::Iccid(i) => i.as_str(),
            Self::Unrecognised(s) => s,
        }
    }
}

/// One order-status row.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderStatusInfo {
    /// The eSIM (see [`EsimRef`]).
    pub eid: Option<EsimRef>,
    /// Package code.
    pub package_code: Option<String>,
    /// Status.
    pub status: OrderStatus,
    /// Actual start.
    pub actual_start: Option<NaiveDateTime>,
    /// Planned end.
    pub planned_end: Option<NaiveDateTime>,
}

impl TryFrom<wire::OrderStatusRow> for OrderStatusInfo {
    type Error = FieldError;
    fn try_from(w: wire::OrderStatusRow) -> Result<Self, FieldError> {
        let status = w.status.as_deref().ok_or("status is missing")?;
        let status =
            OrderStatus::from_code(status).ok_or_else(|| format!("status {status:?} is not 0..3"))?;
        Ok(Self {
            eid: non_empty(w.eid).map(|s| EsimRef::parse(&s)),
            package_code: non_empty(w.package_code),
            status,
            actual_start: parse_time("actualStartTime", w.actual_start_time.as_deref())?,
            planned_end: parse_time("plannedEndTime", w.planned_end_time.as_deref())?,
        })
    }
}

/// Whether an order-status row is MP's "Null data" (nothing found).
pub fn is_null_status_row(r: &wire::OrderStatusRow) -> bool {
    r == &wire::OrderStatusRow::default()
}

/// One traffic row.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    /// The eSIM.
    pub eid: Option<EsimRef>,
    /// Package code.
    pub package_code: Option<String>,
    /// Total traffic in bytes (`packageFlow` MB × 1 048 576).
    pub total_bytes: Option<u64>,
    /// Used traffic in bytes (`packageUsedFlow` MB × 1 048 576).
    pub used_bytes: Option<u64>,
    /// Actual start.
    pub actual_start: Option<NaiveDateTime>,
    /// Planned end.
    pub planned_end: Option<NaiveDateTime>,
    /// Order period in months.
    pub cycle_months: Option<u32>,
}

impl TryFrom<wire::TrafficRow> for Traffic {
    type Error = FieldError;
    fn try_from(w: wire::TrafficRow) -> Result<Self, FieldError> {
        Ok(Self {
            eid: non_empty(w.eid).map(|s| EsimRef::parse(&s)),
            package_code: non_empty(w.package_code),
            total_bytes: mb_to_bytes("packageFlow", w.package_flow.as_ref())?,
            used_bytes: mb_to_bytes("packageUsedFlow", w.package_used_flow.as_ref())?,
            actual_start: parse_time("actualStartTime", w.actual_start_time.as_deref())?,
            planned_end: parse_time("plannedEndTime", w.planned_end_time.as_deref())?,
            cycle_months: w
                .cycle
                .as_ref()
                .map(|c| {
                    c.to_u64()
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| format!("cycle {:?} is not a count", c.as_text()))
                })
                .transpose()?,
        })
    }
}

/// Whether a traffic row is MP's "Null data".
pub fn is_null_traffic_row(r: &wire::TrafficRow) -> bool {
    r == &wire::TrafficRow::default()
}

/// Daily usage history of an order.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyTraffic {
    /// Package code.
    pub package_code: Option<String>,
    /// Actual start.
    pub actual_start: Option<NaiveDateTime>,
    /// Planned end.
    pub planned_end: Option<NaiveDateTime>,
    /// One entry per day with data.
    pub days: Vec<DailyUsage>,
}

/// Usage of one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyUsage {
    /// The day.
    pub date: NaiveDate,
    /// Bytes used.
    pub used_bytes: u64,
}

impl DailyTraffic {
    /// Decodes; `Ok(None)` for MP's "Null data" (all fields and day rows null).
    pub fn from_wire(w: wire::DailyTrafficData) -> Result<Option<Self>, FieldError> {
        let days_null = w
            .daily_traffic
            .iter()
            .all(|d| d == &wire::DailyTrafficRow::default());
        if w.package_code.is_none()
            && w.actual_start_time.is_none()
            && w.planned_end_time.is_none()
            && days_null
        {
            return Ok(None);
        }
        let mut days = Vec::new();
        for d in w.daily_traffic {
            if d == wire::DailyTrafficRow::default() {
                continue;
            }
            let date = d.flow_use_time.as_deref().ok_or("flowUseTime is missing")?;
            let date = NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d")
                .map_err(|_| format!("flowUseTime {date:?} is not YYYY-MM-DD"))?;
            let used = d.use_flow.as_ref().ok_or("useFlow is missing")?;
            let used_bytes = used
                .to_u64()
                .ok_or_else(|| format!("useFlow {:?} is not a byte count", used.as_text()))?;
            days.push(DailyUsage { date, used_bytes });
        }
        Ok(Some(Self {
            package_code: non_empty(w.package_code),
            actual_start: parse_time("actualStartTime", w.actual_start_time.as_deref())?,
            planned_end: parse_time("plannedEndTime", w.planned_end_time.as_deref())?,
            days,
        }))
    }
}

/// A decoded alarm callback.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    /// The eSIM.
    pub eid: EsimRef,
    /// Package code.
    pub package_code: String,
    /// Order code.
    pub order_code: String,
    /// Used share in percent ("84%" → 84).
    pub used_percent: Decimal,
    /// MP's request id.
    pub request_id: Option<String>,
}

/// Parses `packageUsedRate` ("53%", "84%", "100%"; also "53" and "53.5%").
pub fn parse_used_rate(s: &str) -> Option<Decimal> {
    let t = s.trim();
    let t = t.strip_suffix('%').unwrap_or(t).trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    t.parse().ok()
}

impl TryFrom<wire::AlarmCallback> for Alarm {
    type Error = FieldError;
    fn try_from(w: wire::AlarmCallback) -> Result<Self, FieldError> {
        let used_percent = parse_used_rate(&w.package_used_rate)
            .ok_or_else(|| format!("packageUsedRate {:?} is not a percentage", w.package_used_rate))?;
        Ok(Self {
            eid: EsimRef::parse(&w.eid),
            package_code: w.package_code,
            order_code: w.order_code,
            used_percent,
            request_id: w.request_id,
        })
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

/// Parses an MP time "YYYY-MM-DD HH:MM:SS" (empty/null → `None`).
pub fn parse_time(field: &str, s: Option<&str>) -> Result<Option<NaiveDateTime>, FieldError> {
    match s.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S")
            .map(Some)
            .map_err(|_| format!("{field} {t:?} is not YYYY-MM-DD HH:MM:SS")),
    }
}

/// MB (possibly fractional) → bytes, rounded down.
pub fn mb_to_bytes(field: &str, v: Option<&NumOrStr>) -> Result<Option<u64>, FieldError> {
    let Some(v) = v else { return Ok(None) };
    let d = v
        .to_decimal()
        .filter(|d| !d.is_sign_negative())
        .ok_or_else(|| format!("{field} {:?} is not a number of MB", v.as_text()))?;
    let bytes = d
        .checked_mul(Decimal::from(BYTES_PER_MB))
        .map(|b| b.floor())
        .and_then(|b| u64::try_from(b).ok())
        .ok_or_else(|| format!("{field} {:?} MB is out of range", v.as_text()))?;
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_units() {
        assert_eq!(parse_used_rate("84%"), Some(Decimal::from(84)));
        assert_eq!(parse_used_rate(" 100% "), Some(Decimal::from(100)));
        assert_eq!(parse_used_rate("53.5%").unwrap().to_string(), "53.5");
        assert_eq!(parse_used_rate("%"), None);
        assert_eq!(parse_used_rate("-1%"), None);
        assert_eq!(
            mb_to_bytes("f", Some(&NumOrStr::Str("1.5".into()))).unwrap(),
            Some(1_572_864)
        );
        assert!(mb_to_bytes("f", Some(&NumOrStr::Str("x".into()))).is_err());
        assert!(mb_to_bytes("f", Some(&NumOrStr::Str("1e30".into()))).is_err());
    }

    #[test]
    fn esim_ref() {
        assert!(matches!(
            EsimRef::parse("89491202308310000235"),
            EsimRef::Iccid(_)
        ));
        assert!(matches!(
            EsimRef::parse("89049032123451234512345678901235"),
            EsimRef::Eid(_)
        ));
        assert!(matches!(EsimRef::parse("x"), EsimRef::Unrecognised(_)));
    }
}

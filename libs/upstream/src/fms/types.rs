//! Typed FMS results. Volumes in MB become bytes (1 MB = 1024 × 1024 bytes).

use chrono::{DateTime, FixedOffset, NaiveDateTime};
use esim_domain::{ActivationCode, Iccid, Mcc, Money};
use rust_decimal::Decimal;

use super::wire;
use crate::mp::types::{mb_to_bytes, parse_time};
use crate::wire_common::NumOrStr;

type FieldError = String;

/// Payment status of an FMS order (`orderPayStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayStatus {
    /// 0: waiting for the payment notification — poll again in about 2 s.
    Waiting,
    /// 1: paid; the QR code is available (and e-mailed).
    Paid,
    /// 2: payment failed.
    Failed,
    /// 3: cancelled.
    Cancelled,
}

impl PayStatus {
    /// Maps the wire code.
    pub fn from_code(c: i64) -> Option<Self> {
        match c {
            0 => Some(Self::Waiting),
            1 => Some(Self::Paid),
            2 => Some(Self::Failed),
            3 => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// The answer of `queryOrdStatusAndEmail`.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderPayState {
    /// Status.
    pub status: PayStatus,
    /// The activation code once paid.
    pub activation_code: Option<ActivationCode>,
}

impl TryFrom<wire::OrderStatusData> for OrderPayState {
    type Error = FieldError;
    fn try_from(w: wire::OrderStatusData) -> Result<Self, FieldError> {
        let status = PayStatus::from_code(w.order_pay_status)
            .ok_or_else(|| format!("orderPayStatus {} is not 0..3", w.order_pay_status))?;
        let activation_code = w
            .qr_code
            .filter(|q| !q.expose().trim().is_empty())
            .map(|q| q.expose().parse().map_err(|e| format!("qrCode: {e}")))
            .transpose()?;
        Ok(Self {
            status,
            activation_code,
        })
    }
}

/// A reserved profile awaiting payment.
#[derive(Debug, Clone, PartialEq)]
pub struct PreOrder {
    /// The pre-order id: `orderId` of the payment notification and status calls.
    pub id: i64,
    /// Order number.
    pub order_no: String,
    /// The amount to pay.
    pub amount: Money,
    /// Package name.
    pub package_name: Option<String>,
    /// When it was made (FMS answers e.g. `2022-12-05T03:14:50.958+0000`).
    pub order_time: DateTime<FixedOffset>,
    /// Periods.
    pub period_num: Option<i64>,
}

/// Parses FMS timestamps (`+0000` or RFC 3339 offsets).
pub fn parse_fms_time(s: &str) -> Option<DateTime<FixedOffset>> {
    let t = s.trim();
    DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f%z")
        .ok()
        .or_else(|| DateTime::parse_from_rfc3339(t).ok())
}

impl TryFrom<wire::PreOrderData> for PreOrder {
    type Error = FieldError;
    fn try_from(w: wire::PreOrderData) -> Result<Self, FieldError> {
        let amount = w
            .amount
            .to_decimal()
            .ok_or_else(|| format!("amount {:?} is not a number", w.amount.as_text()))?;
        let currency = w.currency.parse().map_err(|e| format!("currency: {e}"))?;
        let order_time = parse_fms_time(&w.order_time)
            .ok_or_else(|| format!("orderTime {:?} is not a timestamp", w.order_time))?;
        Ok(Self {
            id: w.id,
            order_no: w.order_no,
            amount: Money::new(amount, currency),
            package_name: w.package_name,
            order_time,
            period_num: w.period_num,
        })
    }
}

/// What to pre-order (values copied from the package detail).
#[derive(Debug, Clone, PartialEq)]
pub struct PreOrderInput {
    /// Package id.
    pub package_id: i64,
    /// Package code.
    pub package_code: String,
    /// Price and currency (`currencyAbbr`).
    pub money: Money,
    /// `currencyId`.
    pub currency_id: i64,
    /// `period`.
    pub period_num: i64,
    /// Number of packages (1).
    pub package_num: i64,
    /// Discount flag (0).
    pub discount_flag: i64,
    /// Where FMS sends the QR e-mail.
    pub receive_qr_email: Option<String>,
}

/// A payment result to notify once.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentNotice {
    /// The pre-order id.
    pub pre_order_id: i64,
    /// When the payment happened (seconds).
    pub date_time: i64,
    /// The amount paid.
    pub paid: Money,
    /// The payment provider's id.
    pub payment_id: String,
    /// Succeeded or failed.
    pub result: wire::PaymentResult,
}

/// A country FMS sells plans for.
#[derive(Debug, Clone, PartialEq)]
pub struct Country {
    /// MCC.
    pub mcc: Mcc,
    /// Name.
    pub name: Option<String>,
}

impl TryFrom<wire::CountryRow> for Country {
    type Error = FieldError;
    fn try_from(w: wire::CountryRow) -> Result<Self, FieldError> {
        let text = w.country_code.as_text();
        let mcc = format!("{text:0>3}")
            .parse()
            .map_err(|e| format!("countryCode: {e}"))?;
        Ok(Self {
            mcc,
            name: w.country_name.or(w.iso_country_name),
        })
    }
}

/// A package of a country.
#[derive(Debug, Clone, PartialEq)]
pub struct Package {
    /// Package id.
    pub id: i64,
    /// Package code.
    pub package_code: String,
    /// Name.
    pub name: Option<String>,
    /// Data volume in bytes.
    pub volume_bytes: Option<u64>,
    /// Validity in days.
    pub days: Option<u64>,
    /// Price.
    pub price: Option<Money>,
}

fn money(price: Option<&NumOrStr>, currency: Option<&str>) -> Result<Option<Money>, FieldError> {
    match (price, currency) {
        (Some(p), Some(c)) => {
            let amount: Decimal = p
                .to_decimal()
                .ok_or_else(|| format!("price {:?} is not a number", p.as_text()))?;
            Ok(Some(Money::new(
                amount,
                c.parse().map_err(|e| format!("currency: {e}"))?,
            )))
        }
        _ => Ok(None),
    }
}

impl TryFrom<wire::PackageRow> for Package {
    type Error = FieldError;
    fn try_from(w: wire::PackageRow) -> Result<Self, FieldError> {
        Ok(Self {
            id: w.id,
            price: money(w.price.as_ref(), w.currency.as_deref())?,
            package_code: w.package_code,
            name: w.package_name,
            volume_bytes: mb_to_bytes("flow", w.flow.as_ref())?,
            days: w.days.as_ref().and_then(NumOrStr::to_u64),
        })
    }
}

/// A package's detail: what a pre-order needs.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageDetail {
    /// Package id.
    pub id: i64,
    /// Package code.
    pub package_code: String,
    /// Name.
    pub name: Option<String>,
    /// `periodNum` of the pre-order.
    pub period: i64,
    /// Data volume in bytes.
    pub volume_bytes: Option<u64>,
    /// Validity in days.
    pub days: Option<u64>,
    /// Prices with their `currencyId`.
    pub prices: Vec<(Money, i64)>,
}

impl TryFrom<wire::PackageDetail> for PackageDetail {
    type Error = FieldError;
    fn try_from(w: wire::PackageDetail) -> Result<Self, FieldError> {
        let mut prices = Vec::new();
        for c in &w.currency_info {
            if let Some(m) = money(c.price.as_ref(), Some(&c.currency_abbr))? {
                prices.push((m, c.currency_id));
            }
        }
        Ok(Self {
            id: w.id,
            package_code: w.package_code,
            name: w.package_name,
            period: w.period,
            volume_bytes: mb_to_bytes("flow", w.flow.as_ref())?,
            days: w.days.as_ref().and_then(NumOrStr::to_u64),
            prices,
        })
    }
}

/// The customer's eSIM from `myEsimDetail`.
#[derive(Debug, Clone, PartialEq)]
pub struct EsimDetail {
    /// Order number.
    pub order_no: Option<String>,
    /// ICCID.
    pub iccid: Option<Iccid>,
    /// Activation code.
    pub activation_code: Option<ActivationCode>,
    /// Package name.
    pub package_name: Option<String>,
    /// Package code.
    pub package_code: Option<String>,
    /// Volume in bytes.
    pub total_bytes: Option<u64>,
    /// Used in bytes.
    pub used_bytes: Option<u64>,
    /// Start.
    pub start: Option<NaiveDateTime>,
    /// End.
    pub end: Option<NaiveDateTime>,
}

impl TryFrom<wire::EsimDetailData> for EsimDetail {
    type Error = FieldError;
    fn try_from(w: wire::EsimDetailData) -> Result<Self, FieldError> {
        Ok(Self {
            order_no: w.order_no,
            iccid: w
                .iccid
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.parse().map_err(|e| format!("iccid: {e}")))
                .transpose()?,
            activation_code: w
                .qr_code
                .filter(|s| !s.expose().trim().is_empty())
                .map(|s| s.expose().parse().map_err(|e| format!("qrCode: {e}")))
                .transpose()?,
            package_name: w.package_name,
            package_code: w.package_code,
            total_bytes: mb_to_bytes("totalFlow", w.total_flow.as_ref())?,
            used_bytes: mb_to_bytes("usedFlow", w.used_flow.as_ref())?,
            start: parse_time("startTime", w.start_time.as_deref())?,
            end: parse_time("endTime", w.end_time.as_deref())?,
        })
    }
}

//! Between stored rows and API messages: orders, events, top-ups, money, timestamps, ids and
//! page tokens.

use esim_proto::google::r#type::Money as PbMoney;
use esim_proto::ordering::v1 as pb;
use esim_proto::r#type::v1 as tpb;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::entity::{order, order_event, top_up};
use crate::error::{OrderingError, Result};
use crate::model::{Provider, state_pb};

pub use esim_runtime::api::{from_timestamp, money, page_size, parse_money, timestamp};

/// Stored decimal text as `google.type.Money`.
pub fn money_text(amount: &str, currency: &str) -> Result<PbMoney> {
    Ok(money(parse_decimal(amount)?, currency))
}

/// Stored decimal text.
pub fn parse_decimal(s: &str) -> Result<Decimal> {
    s.parse::<Decimal>()
        .map_err(|_| OrderingError::Internal(format!("stored amount {s:?} is not a decimal")))
}

/// A new order id: a ULID (Crockford base32 of a UUIDv7, whose layout is a ULID's: 48 bits of
/// milliseconds, then randomness), so ids sort by creation time.
pub fn new_id() -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut v = uuid::Uuid::now_v7().as_u128();
    let mut out = [0u8; 26];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(v & 31) as usize];
        v >>= 5;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

/// Whether `id` looks like one of our ids (26 Crockford base32 characters).
pub fn is_id(id: &str) -> bool {
    id.len() == 26
        && id.bytes().all(|b| {
            b.is_ascii_digit() || (b.is_ascii_uppercase() && !matches!(b, b'I' | b'L' | b'O' | b'U'))
        })
}

/// The id of `orders/{id}` (`field` names the request field in errors).
pub fn order_id(name: &str, field: &str) -> Result<String> {
    match name.strip_prefix("orders/") {
        Some(id) if is_id(id) => Ok(id.to_owned()),
        _ => Err(OrderingError::invalid(
            field,
            format!("{name:?} is not an order name (orders/{{order}})"),
        )),
    }
}

/// Validates a required AIP-155 request id: 1-64 characters of `[A-Za-z0-9._~:-]`.
pub fn request_id(id: &str, field: &str) -> Result<()> {
    Ok(esim_runtime::api::request_id(id, field, true)?)
}

/// SHA-256 hex of the parts, each length-prefixed (so no two part lists collide).
pub fn fingerprint(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A stored order (with its top-ups) as the API's `Order`.
pub fn order(row: &order::Model, top_ups: &[top_up::Model]) -> Result<pb::Order> {
    let provider = Provider::parse(&row.provider)
        .ok_or_else(|| OrderingError::Internal(format!("stored provider {:?}", row.provider)))?;
    let reference = match provider {
        Provider::Mp => pb::product_snapshot::ProviderReference::Mp(tpb::MpProductReference {
            goods_id: row.mp_goods_id.unwrap_or_default(),
            product_id: row.mp_product_id.unwrap_or_default(),
            sim_group_code: row.mp_sim_group_code.clone().unwrap_or_default(),
        }),
        Provider::Fms => pb::product_snapshot::ProviderReference::Fms(tpb::FmsPackageReference {
            package_code: row.fms_package_code.clone().unwrap_or_default(),
            package_id: row.fms_package_id.unwrap_or_default(),
            currency_id: row.fms_currency_id.unwrap_or_default(),
            period_num: row.fms_period_num.unwrap_or_default(),
        }),
        Provider::Sft => pb::product_snapshot::ProviderReference::Sft(tpb::SftPlanReference {
            plan_id: row.sft_plan_id.clone().unwrap_or_default(),
        }),
    };
    let snapshot = pb::ProductSnapshot {
        product: row.product.clone(),
        provider: provider.to_pb() as i32,
        provider_reference: Some(reference),
        display_name: row.product_display_name.clone(),
        data_bytes: row.product_data_bytes,
        unlimited: row.product_unlimited,
        validity_days: row.product_validity_days,
        coverage_country_codes: row
            .product_coverage
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect(),
        wholesale_price: Some(money_text(&row.unit_wholesale, &row.currency)?),
        retail_price: Some(money_text(&row.unit_retail, &row.currency)?),
    };
    let payment = match &row.payment_outcome {
        Some(outcome) => Some(pb::Payment {
            outcome: match outcome.as_str() {
                "SUCCEEDED" => pb::PaymentOutcome::Succeeded,
                _ => pb::PaymentOutcome::Failed,
            } as i32,
            amount: row
                .payment_amount
                .as_deref()
                .map(|a| money_text(a, &row.currency))
                .transpose()?,
            payment_reference: row.payment_reference.clone().unwrap_or_default(),
            report_time: row.payment_report_time.map(timestamp),
            notify_time: row.payment_notify_time.map(timestamp),
        }),
        None => None,
    };
    Ok(pb::Order {
        name: format!("orders/{}", row.id),
        product: row.product.clone(),
        cycle_count: row.cycle_count,
        target_iccid: row.target_iccid.clone().unwrap_or_default(),
        activate_immediately: row.activate_immediately,
        customer_reference: row.customer_reference.clone(),
        customer_email: row.customer_email.clone(),
        provider: provider.to_pb() as i32,
        product_snapshot: Some(snapshot),
        total_wholesale_price: Some(money_text(&row.total_wholesale, &row.currency)?),
        total_retail_price: Some(money_text(&row.total_retail, &row.currency)?),
        state: state_pb(&row.state) as i32,
        state_reason: row.state_reason.clone(),
        upstream_references: Some(pb::UpstreamReferences {
            mp_order_code: row.mp_order_code.clone().unwrap_or_default(),
            fms_pre_order_id: row.fms_pre_order_id.map(|i| i.to_string()).unwrap_or_default(),
            fms_order_no: row.fms_order_no.clone().unwrap_or_default(),
            sft_endpoint_id: row.sft_endpoint_id.clone().unwrap_or_default(),
        }),
        esim: row.esim_name.clone().unwrap_or_default(),
        iccid: row.iccid.clone().unwrap_or_default(),
        top_ups: top_ups.iter().map(top_up_pb).collect::<Result<_>>()?,
        payment,
        payment_deadline: row.payment_deadline.map(timestamp),
        refund_required: row.refund_required,
        request_id: row.request_id.clone(),
        create_time: Some(timestamp(row.create_time)),
        update_time: Some(timestamp(row.update_time)),
        activate_time: row.activate_time.map(timestamp),
        end_time: row.end_time.map(timestamp),
    })
}

/// A stored top-up as the API's `TopUp`.
pub fn top_up_pb(row: &top_up::Model) -> Result<pb::TopUp> {
    let state = match row.state.as_str() {
        "PENDING" => pb::TopUpState::Pending,
        "SUCCEEDED" => pb::TopUpState::Succeeded,
        "FAILED" => pb::TopUpState::Failed,
        "UNKNOWN_OUTCOME" => pb::TopUpState::UnknownOutcome,
        _ => pb::TopUpState::Unspecified,
    };
    Ok(pb::TopUp {
        top_up_id: row.id.clone(),
        request_id: row.request_id.clone(),
        state: state as i32,
        state_reason: row.state_reason.clone(),
        mp_order_code: row.mp_order_code.clone().unwrap_or_default(),
        mp_renew_period: row.mp_renew_period.unwrap_or_default(),
        sft_addon: row.sft_addon.clone().unwrap_or_default(),
        retail_price: Some(money_text(&row.retail_price, &row.currency)?),
        create_time: Some(timestamp(row.create_time)),
        update_time: Some(timestamp(row.update_time)),
    })
}

/// A stored event as the API's `OrderEvent`.
pub fn event(row: &order_event::Model) -> pb::OrderEvent {
    pb::OrderEvent {
        name: format!("orders/{}/events/{}", row.order_id, row.sequence),
        sequence: row.sequence,
        previous_state: state_pb(&row.previous_state) as i32,
        state: state_pb(&row.state) as i32,
        reason: row.reason.clone(),
        create_time: Some(timestamp(row.create_time)),
    }
}

/// An opaque page token: the position, bound to the query's fingerprint.
pub fn encode_token(fingerprint: &str, position: &str) -> String {
    esim_runtime::api::page_token::encode(fingerprint, &position)
}

/// The position of a page token made with the same filters.
pub fn decode_token(token: &str, fingerprint: &str) -> Result<Option<String>> {
    Ok(esim_runtime::api::page_token::decode(token, fingerprint)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_ulids_in_time_order() {
        let a = new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id();
        assert!(is_id(&a) && is_id(&b), "{a} {b}");
        assert!(a < b);
        assert!(order_id(&format!("orders/{a}"), "name").is_ok());
        assert!(order_id("orders/x", "name").is_err());
    }

    #[test]
    fn money_and_tokens() {
        let m = money("12.5".parse().unwrap(), "USD");
        assert_eq!((m.units, m.nanos), (12, 500_000_000));
        assert_eq!(parse_money(&m, "x").unwrap().amount(), "12.5".parse().unwrap());
        let neg = PbMoney {
            currency_code: "USD".into(),
            units: -1,
            nanos: 0,
        };
        assert!(parse_money(&neg, "x").is_err());
        let fp = fingerprint(&["a", "b"]);
        assert_ne!(fp, fingerprint(&["ab", ""]));
        let t = encode_token(&fp, "pos|1");
        assert_eq!(decode_token(&t, &fp).unwrap().as_deref(), Some("pos|1"));
        assert!(decode_token(&t, &fingerprint(&["c"])).is_err());
        assert!(request_id("abc-1:2", "r").is_ok() && request_id("a b", "r").is_err());
    }
}

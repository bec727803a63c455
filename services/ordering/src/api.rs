//! The gRPC API: `esim.ordering.v1.OrderingService`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use esim_domain::{Iccid, TextRule};
use esim_proto::catalog::v1 as catalog;
use esim_proto::ordering::v1 as pb;
use esim_proto::ordering::v1::ordering_service_server::OrderingService;
use esim_proto::provisioning::v1 as provisioning;
use esim_runtime::api::text;
use esim_upstream::error::ErrorKind;
use esim_upstream::fms::FmsCredentials;
use esim_upstream::mp::OrderStatus;
use futures::Stream;
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tonic::{Code, Request, Response, Status};

use crate::convert::{self, fingerprint, parse_decimal, parse_money, timestamp};
use crate::entity::{fms_account, order, top_up};
use crate::error::{OrderingError, Result};
use crate::model::{Provider, State, step};
use crate::saga::Saga;
use crate::store::{Committed, key_row, through_outage};

const CREATE_SCOPE: &str = "CreateOrder";
const TOP_UP_SCOPE: &str = "TopUpOrder";
/// Most events read at once for `WatchOrder`.
const EVENT_BATCH: u64 = 100;

/// The ordering service's gRPC implementation.
#[derive(Debug, Clone)]
pub struct OrderingApi {
    saga: Arc<Saga>,
}

type WatchStream = Pin<Box<dyn Stream<Item = std::result::Result<pb::WatchOrderResponse, Status>> + Send>>;

fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.chars().all(|c| c.is_ascii_graphic())
        && !local.contains('@')
}

/// A customer reference: the reseller's own id for the traveller.
const CUSTOMER_REFERENCE: TextRule = TextRule::required(128);

fn money_key(m: Option<&esim_proto::google::r#type::Money>) -> String {
    m.map(|m| format!("{}|{}|{}", m.currency_code, m.units, m.nanos))
        .unwrap_or_default()
}

/// Whether a watch ends after an event in `state`.
fn settles(state: &str, follow_lifecycle: bool) -> bool {
    let Some(s) = State::parse(state) else {
        return false;
    };
    s.is_terminal() || (!follow_lifecycle && s == State::Active)
}

impl OrderingApi {
    /// The API over a running saga.
    pub fn new(saga: Arc<Saga>) -> Self {
        Self { saga }
    }

    async fn order_pb(&self, row: &order::Model) -> Result<pb::Order> {
        // Only an ACTIVE or SUSPENDED order is topped up, so one never ACTIVE has no top-ups.
        if row.activate_time.is_none() {
            return convert::order(row, &[]);
        }
        let top_ups = self.saga.store.top_ups(&row.id).await?;
        convert::order(row, &top_ups)
    }

    /// The order as the write of `committed` left it. Top-ups are taken for active orders only,
    /// so the write that activated the order has none behind it, and needs no read.
    async fn committed_pb(&self, committed: &Committed) -> Result<pb::Order> {
        if committed.row.activate_time == Some(committed.event.create_time) {
            return convert::order(&committed.row, &[]);
        }
        self.order_pb(&committed.row).await
    }

    async fn load(&self, id: &str) -> Result<order::Model> {
        self.saga
            .store
            .order(id)
            .await?
            .ok_or_else(|| OrderingError::NotFound(format!("orders/{id}")))
    }

    async fn existing_by_key(&self, scope: &str, request_id: &str, fp: &str) -> Result<Option<order::Model>> {
        let Some(key) = self.saga.store.key(scope, request_id).await? else {
            return Ok(None);
        };
        if key.fingerprint != fp {
            return Err(OrderingError::AlreadyExists(format!(
                "request_id {request_id:?} was already used for a different request"
            )));
        }
        Ok(Some(self.load(&key.order_id).await?))
    }

    async fn create_order(&self, req: pb::CreateOrderRequest) -> Result<pb::Order> {
        convert::request_id(&req.request_id, "request_id")?;
        let Some(input) = req.order.as_ref() else {
            return Err(OrderingError::invalid("order", "is required"));
        };
        let product_id = input
            .product
            .strip_prefix("products/")
            .filter(|id| !id.is_empty() && !id.contains('/'))
            .ok_or_else(|| {
                OrderingError::invalid("order.product", "must be a product name, products/{product}")
            })?;
        let customer = input.customer_reference.as_str();
        text(customer, "order.customer_reference", CUSTOMER_REFERENCE)?;
        let email = input.customer_email.trim();
        if !email.is_empty() && !valid_email(email) {
            return Err(OrderingError::invalid(
                "order.customer_email",
                "is not an e-mail address",
            ));
        }
        if input.cycle_count < 0 {
            return Err(OrderingError::invalid(
                "order.cycle_count",
                "must not be negative",
            ));
        }
        let target_iccid = if input.target_iccid.trim().is_empty() {
            None
        } else {
            Some(
                input
                    .target_iccid
                    .parse::<Iccid>()
                    .map_err(|e| OrderingError::invalid("order.target_iccid", e.to_string()))?
                    .to_string(),
            )
        };
        let expected = req
            .expected_retail_price
            .as_ref()
            .map(|m| parse_money(m, "expected_retail_price"))
            .transpose()?;
        let fp = fingerprint(&[
            &input.product,
            &input.cycle_count.to_string(),
            target_iccid.as_deref().unwrap_or_default(),
            if input.activate_immediately { "1" } else { "0" },
            customer,
            email,
            &money_key(req.expected_retail_price.as_ref()),
        ]);
        let placed = self
            .place(&req, input, product_id, target_iccid, expected, email, &fp)
            .await;
        if let Ok(Some(order)) = placed {
            return Ok(order);
        }
        // A replay, a concurrent duplicate that won the key, or a request that fails now: an
        // order made earlier under this request id is the answer whatever the catalogue says
        // today. Looked up only here, so a new order costs no read of its key.
        match (
            self.existing_by_key(CREATE_SCOPE, &req.request_id, &fp).await,
            placed,
        ) {
            (Ok(Some(existing)), _) => self.order_pb(&existing).await,
            (Err(mismatch @ OrderingError::AlreadyExists(_)), _) => Err(mismatch),
            (_, Err(refused)) => Err(refused),
            (Err(lookup), Ok(_)) => Err(lookup),
            (Ok(None), Ok(_)) => Err(OrderingError::Internal("idempotency key vanished".into())),
        }
    }

    /// Validates a new order against the catalogue and records it under its request id, before
    /// anything else is written; `None` when the request id is taken already.
    #[allow(clippy::too_many_arguments)]
    async fn place(
        &self,
        req: &pb::CreateOrderRequest,
        input: &pb::Order,
        product_id: &str,
        target_iccid: Option<String>,
        expected: Option<esim_domain::Money>,
        email: &str,
        fp: &str,
    ) -> Result<Option<pb::Order>> {
        let product_name = format!("products/{product_id}");
        let product = match self.saga.peers.get_product(&product_name, &req.request_id).await {
            Ok(p) => p,
            Err(s) if s.code() == Code::NotFound => {
                return Err(OrderingError::invalid(
                    "order.product",
                    format!("{product_name} does not exist"),
                ));
            }
            Err(s) if s.code() == Code::InvalidArgument => {
                return Err(OrderingError::invalid("order.product", s.message().to_owned()));
            }
            Err(s) => {
                return Err(OrderingError::Unavailable(format!(
                    "the catalog is unavailable: {}",
                    s.message()
                )));
            }
        };
        if !product.available {
            return Err(OrderingError::FailedPrecondition(format!(
                "order.product: {product_name} is not available"
            )));
        }
        let provider = esim_proto::r#type::v1::Provider::try_from(product.provider)
            .ok()
            .and_then(Provider::from_pb)
            .ok_or_else(|| {
                OrderingError::FailedPrecondition(format!("order.product: {product_name} has no provider"))
            })?;
        let mut allowed: Vec<i32> = product.allowed_cycle_counts.clone();
        allowed.sort_unstable();
        if allowed.is_empty() {
            allowed.push(1);
        }
        let cycles = if input.cycle_count == 0 {
            allowed[0]
        } else if allowed.contains(&input.cycle_count) {
            input.cycle_count
        } else {
            return Err(OrderingError::invalid(
                "order.cycle_count",
                format!(
                    "{} is not allowed for {product_name} (allowed: {allowed:?})",
                    input.cycle_count
                ),
            ));
        };
        if target_iccid.is_some() && provider != Provider::Mp {
            return Err(OrderingError::invalid(
                "order.target_iccid",
                "only MP orders can target an existing eSIM",
            ));
        }
        if provider == Provider::Fms && email.is_empty() {
            return Err(OrderingError::invalid(
                "order.customer_email",
                "is required for FMS products",
            ));
        }
        let (Some(wholesale), Some(retail)) =
            (product.wholesale_price.as_ref(), product.retail_price.as_ref())
        else {
            return Err(OrderingError::FailedPrecondition(format!(
                "order.product: {product_name} has no price"
            )));
        };
        let wholesale = parse_money(wholesale, "product.wholesale_price")
            .map_err(|e| OrderingError::FailedPrecondition(format!("order.product: {e}")))?;
        let retail = parse_money(retail, "product.retail_price")
            .map_err(|e| OrderingError::FailedPrecondition(format!("order.product: {e}")))?;
        if wholesale.currency() != retail.currency() {
            return Err(OrderingError::FailedPrecondition(format!(
                "order.product: {product_name} is priced in two currencies"
            )));
        }
        if let Some(expected) = expected
            && expected != retail
        {
            return Err(OrderingError::FailedPrecondition(format!(
                "expected_retail_price: the retail price is now {retail}, not {expected}"
            )));
        }
        let mut row = new_order_row(
            &req.request_id,
            input,
            &product,
            provider,
            cycles,
            target_iccid,
            email,
            wholesale,
            retail,
        );
        let reason = "order recorded";
        let key = key_row(CREATE_SCOPE, &req.request_id, fp.to_owned(), &row.id, None);
        // Stored already leased, so the worker takes its first step without a claim of its own.
        let leased = self.saga.lease_new(&mut row);
        if !self.saga.store.create_order(key, row.clone(), reason).await? {
            return Ok(None);
        }
        tracing::info!(order = %row.id, provider = provider.as_str(), "order created");
        let created = self.order_pb(&row).await?;
        match leased {
            Some(since) => self.saga.hand_off(row, since),
            None => self.saga.wake.notify_one(),
        }
        Ok(Some(created))
    }

    async fn list_orders(&self, req: pb::ListOrdersRequest) -> Result<pb::ListOrdersResponse> {
        let size = convert::page_size(req.page_size, 50, 500)?;
        let mut cond = Condition::all();
        if !req.customer_reference.is_empty() {
            text(&req.customer_reference, "customer_reference", CUSTOMER_REFERENCE)?;
            cond = cond.add(order::Column::CustomerReference.eq(req.customer_reference.as_str()));
        }
        let mut states = Vec::new();
        for (i, s) in req.states.iter().enumerate() {
            let state = pb::OrderState::try_from(*s)
                .ok()
                .and_then(State::from_pb)
                .ok_or_else(|| OrderingError::invalid(format!("states[{i}]"), "not a valid order state"))?;
            states.push(state.as_str());
        }
        if !states.is_empty() {
            cond = cond.add(order::Column::State.is_in(states.clone()));
        }
        let start = req
            .create_time_start
            .as_ref()
            .map(|t| convert::from_timestamp(t, "create_time_start"))
            .transpose()?;
        let end = req
            .create_time_end
            .as_ref()
            .map(|t| convert::from_timestamp(t, "create_time_end"))
            .transpose()?;
        if let (Some(s), Some(e)) = (start, end)
            && e <= s
        {
            return Err(OrderingError::invalid(
                "create_time_end",
                "must be after create_time_start",
            ));
        }
        if let Some(s) = start {
            cond = cond.add(order::Column::CreateTime.gte(s));
        }
        if let Some(e) = end {
            cond = cond.add(order::Column::CreateTime.lt(e));
        }
        let provider = esim_proto::r#type::v1::Provider::try_from(req.provider)
            .map_err(|_| OrderingError::invalid("provider", "not a valid provider"))?;
        if let Some(p) = Provider::from_pb(provider) {
            cond = cond.add(order::Column::Provider.eq(p.as_str()));
        }
        let fp = fingerprint(&[
            &req.customer_reference,
            &states.join(","),
            &start.map(|t| t.to_rfc3339()).unwrap_or_default(),
            &end.map(|t| t.to_rfc3339()).unwrap_or_default(),
            &req.provider.to_string(),
        ]);
        if let Some(after) = convert::decode_token(&req.page_token, &fp)? {
            cond = cond.add(order::Column::Id.lt(after));
        }
        // Ids are ULIDs: id order is creation order.
        let rows = order::Entity::find()
            .filter(cond)
            .order_by_desc(order::Column::Id)
            .limit(size + 1)
            .all(&self.saga.store.db)
            .await?;
        let more = rows.len() as u64 > size;
        let mut orders = Vec::new();
        for row in rows.iter().take(size as usize) {
            orders.push(self.order_pb(row).await?);
        }
        let next_page_token = match (more, rows.get(size as usize - 1)) {
            (true, Some(last)) => convert::encode_token(&fp, &last.id),
            _ => String::new(),
        };
        Ok(pb::ListOrdersResponse {
            orders,
            next_page_token,
        })
    }

    async fn list_events(&self, req: pb::ListOrderEventsRequest) -> Result<pb::ListOrderEventsResponse> {
        let id = convert::order_id(&req.parent, "parent")?;
        let size = convert::page_size(req.page_size, 100, 500)?;
        self.load(&id).await?;
        let fp = fingerprint(&[&id]);
        let after = match convert::decode_token(&req.page_token, &fp)? {
            Some(p) => p
                .parse::<i64>()
                .map_err(|_| OrderingError::invalid("page_token", "not a page token of this query"))?,
            None => 0,
        };
        let rows = self.saga.store.events_after(&id, after, size + 1).await?;
        let more = rows.len() as u64 > size;
        let events: Vec<_> = rows.iter().take(size as usize).map(convert::event).collect();
        let next_page_token = match (more, events.last()) {
            (true, Some(last)) => convert::encode_token(&fp, &last.sequence.to_string()),
            _ => String::new(),
        };
        Ok(pb::ListOrderEventsResponse {
            events,
            next_page_token,
        })
    }

    async fn cancel(&self, req: pb::CancelOrderRequest) -> Result<pb::Order> {
        if !req.request_id.is_empty() {
            convert::request_id(&req.request_id, "request_id")?;
        }
        let id = convert::order_id(&req.name, "name")?;
        text(&req.reason, "reason", TextRule::optional(500))?;
        let reason = if req.reason.is_empty() {
            "cancelled by the caller".to_owned()
        } else {
            format!("cancelled by the caller: {}", req.reason)
        };
        for _ in 0..5 {
            let row = self.load(&id).await?;
            let next_step = match (row.state.as_str(), row.saga_step.as_str()) {
                ("CANCELLED", _) => return self.order_pb(&row).await,
                (
                    "PENDING",
                    step::MP_PLACE | step::FMS_ACCOUNT | step::FMS_PREORDER | step::SFT_PROVISION,
                ) => step::DONE,
                ("PENDING_PAYMENT", step::FMS_AWAIT_PAYMENT) if row.payment_outcome.is_none() => {
                    step::FMS_RELEASE
                }
                (state, _) => {
                    return Err(OrderingError::FailedPrecondition(format!(
                        "orders/{id} is {state} and already placed, paid or provisioned: suspend or \
                         terminate its eSIM instead"
                    )));
                }
            };
            let mut n = row.clone();
            n.state = State::Cancelled.as_str().to_owned();
            n.state_reason = reason.clone();
            n.saga_step = next_step.to_owned();
            n.next_attempt_at = Utc::now();
            if let Some(stored) = self.saga.store.write(&row, n).await? {
                self.saga.wake.notify_one();
                return self.order_pb(&stored).await;
            }
        }
        Err(OrderingError::Unavailable(
            "the order is changing; try again".into(),
        ))
    }

    async fn report_payment(&self, req: pb::ReportOrderPaymentRequest) -> Result<pb::Order> {
        convert::request_id(&req.request_id, "request_id")?;
        let id = convert::order_id(&req.name, "name")?;
        let outcome = match pb::PaymentOutcome::try_from(req.outcome) {
            Ok(pb::PaymentOutcome::Succeeded) => "SUCCEEDED",
            Ok(pb::PaymentOutcome::Failed) => "FAILED",
            _ => return Err(OrderingError::invalid("outcome", "must be SUCCEEDED or FAILED")),
        };
        let amount = req
            .amount
            .as_ref()
            .map(|m| parse_money(m, "amount"))
            .transpose()?;
        let succeeded = outcome == "SUCCEEDED";
        if succeeded && amount.is_none() {
            return Err(OrderingError::invalid("amount", "is required for SUCCEEDED"));
        }
        let payment_reference = if succeeded {
            TextRule::required(128)
        } else {
            TextRule::optional(128)
        };
        text(&req.payment_reference, "payment_reference", payment_reference)?;
        let payment_time = req
            .payment_time
            .as_ref()
            .map(|t| convert::from_timestamp(t, "payment_time"))
            .transpose()?;
        for _ in 0..5 {
            let row = self.load(&id).await?;
            if row.provider != Provider::Fms.as_str() {
                return Err(OrderingError::FailedPrecondition(format!(
                    "orders/{id} is not an FMS order"
                )));
            }
            if let Some(a) = &amount {
                let total = parse_decimal(&row.total_retail)?;
                if a.amount() != total || a.currency().as_str() != row.currency {
                    return Err(OrderingError::invalid(
                        "amount",
                        format!(
                            "must equal the order's total retail price {total} {}",
                            row.currency
                        ),
                    ));
                }
            }
            if let Some(previous) = &row.payment_outcome {
                if previous == outcome {
                    return self.order_pb(&row).await;
                }
                return Err(OrderingError::FailedPrecondition(format!(
                    "a payment with outcome {previous} was already reported for orders/{id}"
                )));
            }
            let mut n = row.clone();
            n.payment_outcome = Some(outcome.to_owned());
            n.payment_amount = amount.as_ref().map(|a| a.amount().to_string());
            n.payment_reference = Some(req.payment_reference.clone()).filter(|r| !r.is_empty());
            n.payment_time = Some(payment_time.unwrap_or_else(Utc::now));
            n.payment_report_time = Some(Utc::now());
            match (row.state.as_str(), row.saga_step.as_str()) {
                ("PENDING_PAYMENT", step::FMS_AWAIT_PAYMENT) => {
                    n.payment_notify_state = Some("PENDING".into());
                    n.saga_step = step::FMS_NOTIFY.to_owned();
                    n.next_attempt_at = Utc::now();
                }
                ("EXPIRED", _) => {
                    // Too late: FMS released the profile; nothing is notified.
                    n.refund_required = outcome == "SUCCEEDED";
                    n.state_reason = format!(
                        "{}; a payment reported after the window must be refunded",
                        row.state_reason
                    );
                }
                (state, _) => {
                    return Err(OrderingError::FailedPrecondition(format!(
                        "orders/{id} is {state}: a payment can be reported only while PENDING_PAYMENT"
                    )));
                }
            }
            if let Some(stored) = self.saga.store.write(&row, n).await? {
                if stored.saga_step == step::FMS_NOTIFY {
                    // Notify now, so the caller learns a 6006 at once.
                    self.saga.drive(&id).await;
                    self.saga.wake.notify_one();
                }
                let fresh = self.load(&id).await?;
                return self.order_pb(&fresh).await;
            }
        }
        Err(OrderingError::Unavailable(
            "the order is changing; try again".into(),
        ))
    }

    async fn top_up(&self, req: pb::TopUpOrderRequest) -> Result<pb::TopUpOrderResponse> {
        convert::request_id(&req.request_id, "request_id")?;
        let id = convert::order_id(&req.name, "name")?;
        let expected = req
            .expected_retail_price
            .as_ref()
            .map(|m| parse_money(m, "expected_retail_price"))
            .transpose()?;
        let fp = fingerprint(&[
            &req.name,
            &req.product,
            &money_key(req.expected_retail_price.as_ref()),
        ]);
        if let Some(key) = self.saga.store.key(TOP_UP_SCOPE, &req.request_id).await? {
            if key.fingerprint != fp || key.order_id != id {
                return Err(OrderingError::AlreadyExists(format!(
                    "request_id {:?} was already used for a different request",
                    req.request_id
                )));
            }
            let top_up_id = key.resource_id.unwrap_or_default();
            let existing = self
                .saga
                .store
                .top_up(&top_up_id)
                .await?
                .ok_or_else(|| OrderingError::Internal("top-up vanished".into()))?;
            let row = self.load(&id).await?;
            return self.resume_top_up(row, existing).await;
        }
        let row = self.load(&id).await?;
        let provider = Provider::parse(&row.provider)
            .ok_or_else(|| OrderingError::Internal(format!("stored provider {:?}", row.provider)))?;
        if row.state == State::Finished.as_str() {
            return Err(OrderingError::FailedPrecondition(format!(
                "orders/{id} is FINISHED and cannot be topped up"
            )));
        }
        if !matches!(row.state.as_str(), "ACTIVE" | "SUSPENDED") {
            return Err(OrderingError::FailedPrecondition(format!(
                "orders/{id} is {}: only ACTIVE or SUSPENDED orders can be topped up",
                row.state
            )));
        }
        let (currency, price, plan) = match provider {
            Provider::Fms => {
                return Err(OrderingError::FailedPrecondition(
                    "FMS orders cannot be topped up".into(),
                ));
            }
            Provider::Mp => {
                if !req.product.is_empty() && req.product != row.product {
                    return Err(OrderingError::invalid(
                        "product",
                        "an MP top-up repeats the order's own product",
                    ));
                }
                let code = row.mp_order_code.clone().unwrap_or_default();
                // MP refuses a top-up of a finished order: check first, and say so.
                match self.saga.mp.query_order_status(&code, &req.request_id).await {
                    Ok(Some(rows)) if rows.iter().any(|r| r.status == OrderStatus::Finished) => {
                        return Err(OrderingError::FailedPrecondition(format!(
                            "orders/{id} is finished at MP and cannot be topped up"
                        )));
                    }
                    Ok(_) => {}
                    Err(err) => return Err(OrderingError::Unavailable(format!("MP is unavailable: {err}"))),
                }
                (row.currency.clone(), parse_decimal(&row.total_retail)?, None)
            }
            Provider::Sft => {
                let product_name = if req.product.is_empty() {
                    row.product.clone()
                } else {
                    req.product.clone()
                };
                let product = self.sft_product(&product_name, &req.request_id).await?;
                let Some(catalog::product::ProviderReference::Sft(sft)) = product.provider_reference else {
                    return Err(OrderingError::invalid(
                        "product",
                        format!("{product_name} is not an SFT product"),
                    ));
                };
                let retail = product
                    .retail_price
                    .as_ref()
                    .map(|m| parse_money(m, "product.retail_price"))
                    .transpose()
                    .map_err(|e| OrderingError::FailedPrecondition(format!("product: {e}")))?
                    .ok_or_else(|| {
                        OrderingError::FailedPrecondition(format!("product: {product_name} has no price"))
                    })?;
                (retail.currency().to_string(), retail.amount(), Some(sft.plan_id))
            }
        };
        if let Some(expected) = &expected
            && (expected.amount() != price || expected.currency().as_str() != currency)
        {
            return Err(OrderingError::FailedPrecondition(format!(
                "expected_retail_price: the top-up now costs {price} {currency}"
            )));
        }
        let now = Utc::now();
        let top = top_up::Model {
            id: convert::new_id(),
            order_id: id.clone(),
            request_id: req.request_id.clone(),
            state: "PENDING".into(),
            state_reason: String::new(),
            mp_order_code: None,
            mp_renew_period: None,
            sft_addon: None,
            sft_plan_id: plan,
            currency,
            retail_price: price.normalize().to_string(),
            create_time: now,
            update_time: now,
        };
        let key = key_row(TOP_UP_SCOPE, &req.request_id, fp, &id, Some(top.id.clone()));
        if !self.saga.store.create_top_up(key, top.clone()).await? {
            return Err(OrderingError::Unavailable(
                "a concurrent call with this request_id is running; retry".into(),
            ));
        }
        self.send_top_up(row, top).await
    }

    async fn sft_product(&self, name: &str, request_id: &str) -> Result<catalog::Product> {
        match self.saga.peers.get_product(name, request_id).await {
            Ok(p) => Ok(p),
            Err(s) if matches!(s.code(), Code::NotFound | Code::InvalidArgument) => Err(
                OrderingError::invalid("product", format!("{name}: {}", s.message())),
            ),
            Err(s) => Err(OrderingError::Unavailable(format!(
                "the catalog is unavailable: {}",
                s.message()
            ))),
        }
    }

    /// A retry of a top-up: an SFT one is re-sent (provisioning is idempotent by request id);
    /// an MP one still PENDING after a minute may have been sent by a call that died: UNKNOWN.
    async fn resume_top_up(&self, row: order::Model, top: top_up::Model) -> Result<pb::TopUpOrderResponse> {
        if top.state == "PENDING" {
            if row.provider == Provider::Sft.as_str() {
                return self.send_top_up(row, top).await;
            }
            if Utc::now() - top.update_time > chrono::Duration::seconds(60) {
                let mut n = top.clone();
                n.state = "UNKNOWN_OUTCOME".into();
                n.state_reason = "the MP topUp call did not report back; an operator must check MP".into();
                self.saga.store.update_top_up(&n, &["PENDING"]).await?;
            }
        }
        self.top_up_response(&row.id, &top.id).await
    }

    async fn top_up_response(&self, order_id: &str, top_up_id: &str) -> Result<pb::TopUpOrderResponse> {
        let row = self.load(order_id).await?;
        let top = self
            .saga
            .store
            .top_up(top_up_id)
            .await?
            .ok_or_else(|| OrderingError::Internal("top-up vanished".into()))?;
        Ok(pb::TopUpOrderResponse {
            order: Some(self.order_pb(&row).await?),
            top_up: Some(convert::top_up_pb(&top)?),
        })
    }

    async fn send_top_up(&self, row: order::Model, top: top_up::Model) -> Result<pb::TopUpOrderResponse> {
        let mut n = top.clone();
        if row.provider == Provider::Mp.as_str() {
            let code = row.mp_order_code.clone().unwrap_or_default();
            match self.saga.mp.top_up(&code, &top.request_id).await {
                Ok(done) => {
                    n.state = "SUCCEEDED".into();
                    n.mp_order_code = Some(done.order_code);
                    n.mp_renew_period = i32::try_from(done.renew_period).ok();
                }
                Err(err) if err.outcome_unknown() => {
                    n.state = "UNKNOWN_OUTCOME".into();
                    n.state_reason =
                        format!("{err}: the top-up may have been applied; an operator must check MP");
                }
                Err(err) => {
                    n.state = "FAILED".into();
                    n.state_reason = format!("MP refused the top-up: {err}");
                }
            }
        } else {
            let request = provisioning::CreateAddonRequest {
                request_id: format!("{}-addon", top.id),
                parent: row.esim_name.clone().unwrap_or_default(),
                addon: Some(provisioning::Addon {
                    sft_plan_id: top.sft_plan_id.clone().unwrap_or_default(),
                    order: format!("orders/{}", row.id),
                    ..Default::default()
                }),
            };
            match self.saga.peers.create_addon(request).await {
                Ok(addon) => {
                    n.state = "SUCCEEDED".into();
                    n.sft_addon = Some(addon.name);
                }
                Err(s)
                    if matches!(
                        s.code(),
                        Code::FailedPrecondition
                            | Code::ResourceExhausted
                            | Code::InvalidArgument
                            | Code::NotFound
                    ) =>
                {
                    n.state = "FAILED".into();
                    n.state_reason = format!("provisioning refused the add-on: {}", s.message());
                }
                Err(s) => {
                    // Still PENDING: a retry with the same request_id asks again (idempotent).
                    return Err(OrderingError::Unavailable(format!(
                        "provisioning is unavailable: {}",
                        s.message()
                    )));
                }
            }
        }
        self.saga.store.update_top_up(&n, &["PENDING"]).await?;
        self.top_up_response(&row.id, &top.id).await
    }

    async fn sync_password(
        &self,
        req: pb::SyncCustomerPasswordRequest,
    ) -> Result<pb::SyncCustomerPasswordResponse> {
        if !req.request_id.is_empty() {
            convert::request_id(&req.request_id, "request_id")?;
        }
        let customer = req.customer_reference.as_str();
        text(customer, "customer_reference", CUSTOMER_REFERENCE)?;
        let len = req.password.chars().count();
        if !(8..=128).contains(&len) {
            return Err(OrderingError::invalid("password", "must be 8-128 characters"));
        }
        let sealed = self.saga.seal_password(customer, &req.password)?;
        let now = Utc::now();
        let account = match self.saga.store.fms_account(customer).await? {
            Some(a) => a,
            None => {
                // Kept for the account's creation at the customer's first FMS order.
                let stored = self
                    .saga
                    .store
                    .insert_fms_account(fms_account::Model {
                        customer_reference: customer.to_owned(),
                        email: String::new(),
                        passwd_enc: sealed.clone(),
                        status: "NEW".into(),
                        create_time: now,
                        update_time: now,
                    })
                    .await?;
                if stored.passwd_enc == sealed {
                    return Ok(pb::SyncCustomerPasswordResponse {
                        fms_account_updated: false,
                        sync_time: Some(timestamp(now)),
                    });
                }
                stored
            }
        };
        if account.status != "REGISTERED" {
            self.saga
                .store
                .update_fms_account(&account, &account.email, &sealed, &account.status)
                .await?;
            return Ok(pb::SyncCustomerPasswordResponse {
                fms_account_updated: false,
                sync_time: Some(timestamp(now)),
            });
        }
        let old = self.saga.fms_credentials(&account)?;
        let new_md5 = FmsCredentials::from_plain(String::new(), &req.password).passwd_md5;
        let request_id = if req.request_id.is_empty() {
            "sync-password"
        } else {
            &req.request_id
        };
        match self.saga.fms.password_reset(&old, &new_md5, request_id).await {
            Ok(()) => {}
            Err(err) if matches!(err.kind, ErrorKind::Upstream { .. } | ErrorKind::Auth(_)) => {
                return Err(OrderingError::FailedPrecondition(format!(
                    "FMS refused the password change: {err}"
                )));
            }
            Err(err) => return Err(OrderingError::Unavailable(format!("FMS is unavailable: {err}"))),
        }
        self.saga
            .store
            .update_fms_account(&account, &account.email, &sealed, "REGISTERED")
            .await?;
        Ok(pb::SyncCustomerPasswordResponse {
            fms_account_updated: true,
            sync_time: Some(timestamp(Utc::now())),
        })
    }

    async fn watch(&self, req: pb::WatchOrderRequest) -> Result<WatchStream> {
        let id = convert::order_id(&req.name, "name")?;
        let prefix = format!("orders/{id}/events/");
        let cursor = if req.after_event.is_empty() {
            Ok(None)
        } else {
            req.after_event
                .strip_prefix(&prefix)
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|s| *s >= 0)
                .map(Some)
                .ok_or_else(|| OrderingError::invalid("after_event", format!("must be {prefix}{{sequence}}")))
        };
        // Registered before the first read, so no event committed meanwhile is missed.
        let mut committed = self.saga.store.watch(&id);
        // The first batch is read here with the row, in one statement (one snapshot), which is
        // also the existence check: an unknown order is NOT_FOUND whatever the cursor.
        let after = cursor.as_ref().ok().copied().flatten();
        let (row, first) = self
            .saga
            .store
            .order_with_events(&id, after, EVENT_BATCH)
            .await?
            .ok_or_else(|| OrderingError::NotFound(format!("orders/{id}")))?;
        let mut cursor = cursor?;
        let follow = req.follow_lifecycle;
        let api = self.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let send = |item| {
                let tx = tx.clone();
                async move { tx.send(item).await.is_ok() }
            };
            let mut first = Some((row, first));
            'read: loop {
                let read = match first.take() {
                    Some(read) => Ok(Some(read)),
                    // The watcher is waiting anyway: a short database outage is waited out
                    // rather than ending the stream.
                    None => {
                        through_outage("WatchOrder", || {
                            api.saga.store.order_with_events(&id, cursor, EVENT_BATCH)
                        })
                        .await
                    }
                };
                let (row, events) = match read {
                    Ok(Some(read)) => read,
                    Ok(None) => {
                        let _ =
                            send(Err(Status::from(OrderingError::NotFound(format!("orders/{id}"))))).await;
                        return;
                    }
                    Err(err) => {
                        let _ = send(Err(Status::from(err))).await;
                        return;
                    }
                };
                if cursor.is_none() && events.is_empty() {
                    cursor = Some(0);
                    continue;
                }
                if !events.is_empty() {
                    let order = match api.order_pb(&row).await {
                        Ok(o) => o,
                        Err(err) => {
                            let _ = send(Err(Status::from(err))).await;
                            return;
                        }
                    };
                    for event in &events {
                        cursor = Some(event.sequence);
                        let item = pb::WatchOrderResponse {
                            event: Some(convert::event(event)),
                            order: Some(order.clone()),
                        };
                        if !send(Ok(item)).await {
                            return;
                        }
                        if settles(&event.state, follow) {
                            return;
                        }
                    }
                    // A full batch may have more behind it; a shorter one was all there was when
                    // read, and what came after arrives on `committed` (registered before).
                    if events.len() as u64 == EVENT_BATCH {
                        continue;
                    }
                }
                // Up to date: the next event committed here comes with its row (no read back);
                // another replica's is found by polling, as is one this watcher missed.
                loop {
                    let next = tokio::select! {
                        c = committed.next() => c,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => None,
                        _ = tx.closed() => return,
                    };
                    let (Some(c), Some(after)) = (next, cursor) else {
                        continue 'read;
                    };
                    if c.event.sequence <= after {
                        continue; // sent already
                    }
                    if c.event.sequence != after + 1 {
                        continue 'read;
                    }
                    let order = match api.committed_pb(&c).await {
                        Ok(o) => o,
                        Err(err) => {
                            let _ = send(Err(Status::from(err))).await;
                            return;
                        }
                    };
                    cursor = Some(c.event.sequence);
                    let item = pb::WatchOrderResponse {
                        event: Some(convert::event(&c.event)),
                        order: Some(order),
                    };
                    if !send(Ok(item)).await || settles(&c.event.state, follow) {
                        return;
                    }
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

#[allow(clippy::too_many_arguments)]
fn new_order_row(
    request_id: &str,
    input: &pb::Order,
    product: &catalog::Product,
    provider: Provider,
    cycles: i32,
    target_iccid: Option<String>,
    email: &str,
    wholesale: esim_domain::Money,
    retail: esim_domain::Money,
) -> order::Model {
    let now = Utc::now();
    let n = Decimal::from(cycles);
    let (mut mp, mut fms, mut sft) = (None, None, None);
    match &product.provider_reference {
        Some(catalog::product::ProviderReference::Mp(r)) => mp = Some(r.clone()),
        Some(catalog::product::ProviderReference::Fms(r)) => fms = Some(r.clone()),
        Some(catalog::product::ProviderReference::Sft(r)) => sft = Some(r.clone()),
        None => {}
    }
    order::Model {
        id: convert::new_id(),
        request_id: request_id.to_owned(),
        customer_reference: input.customer_reference.clone(),
        customer_email: email.to_owned(),
        provider: provider.as_str().to_owned(),
        product: product.name.clone(),
        product_display_name: product.display_name.clone(),
        product_data_bytes: product.data_bytes,
        product_unlimited: product.unlimited,
        product_validity_days: product.validity_days,
        product_coverage: product.coverage_country_codes.join(","),
        mp_goods_id: mp.as_ref().map(|r| r.goods_id),
        mp_product_id: mp.as_ref().map(|r| r.product_id),
        mp_sim_group_code: mp.as_ref().map(|r| r.sim_group_code.clone()),
        fms_package_code: fms.as_ref().map(|r| r.package_code.clone()),
        fms_package_id: fms.as_ref().map(|r| r.package_id),
        fms_currency_id: fms.as_ref().map(|r| r.currency_id),
        fms_period_num: fms.as_ref().map(|r| r.period_num),
        sft_plan_id: sft.as_ref().map(|r| r.plan_id.clone()),
        cycle_count: cycles,
        target_iccid,
        activate_immediately: input.activate_immediately,
        currency: retail.currency().to_string(),
        unit_wholesale: wholesale.amount().normalize().to_string(),
        unit_retail: retail.amount().normalize().to_string(),
        total_wholesale: (wholesale.amount() * n).normalize().to_string(),
        total_retail: (retail.amount() * n).normalize().to_string(),
        state: State::Pending.as_str().to_owned(),
        state_reason: "order recorded".into(),
        mp_order_code: None,
        iccid: None,
        activation_code_enc: None,
        fms_pre_order_id: None,
        fms_order_no: None,
        fms_amount: None,
        fms_currency: None,
        sft_endpoint_id: None,
        esim_name: None,
        refund_required: false,
        payment_deadline: None,
        payment_outcome: None,
        payment_amount: None,
        payment_reference: None,
        payment_time: None,
        payment_report_time: None,
        payment_notify_state: None,
        payment_notify_time: None,
        saga_step: provider.first_step().to_owned(),
        next_attempt_at: now,
        attempts: 0,
        last_error: None,
        lease_owner: None,
        lease_until: None,
        version: 1,
        create_time: now,
        update_time: now,
        activate_time: None,
        end_time: None,
    }
}

#[tonic::async_trait]
impl OrderingService for OrderingApi {
    async fn create_order(
        &self,
        request: Request<pb::CreateOrderRequest>,
    ) -> std::result::Result<Response<pb::Order>, Status> {
        Ok(Response::new(self.create_order(request.into_inner()).await?))
    }

    async fn get_order(
        &self,
        request: Request<pb::GetOrderRequest>,
    ) -> std::result::Result<Response<pb::Order>, Status> {
        let id = convert::order_id(&request.get_ref().name, "name")?;
        let row = self.load(&id).await?;
        Ok(Response::new(self.order_pb(&row).await?))
    }

    async fn list_orders(
        &self,
        request: Request<pb::ListOrdersRequest>,
    ) -> std::result::Result<Response<pb::ListOrdersResponse>, Status> {
        Ok(Response::new(self.list_orders(request.into_inner()).await?))
    }

    type WatchOrderStream = WatchStream;

    async fn watch_order(
        &self,
        request: Request<pb::WatchOrderRequest>,
    ) -> std::result::Result<Response<Self::WatchOrderStream>, Status> {
        Ok(Response::new(self.watch(request.into_inner()).await?))
    }

    async fn list_order_events(
        &self,
        request: Request<pb::ListOrderEventsRequest>,
    ) -> std::result::Result<Response<pb::ListOrderEventsResponse>, Status> {
        Ok(Response::new(self.list_events(request.into_inner()).await?))
    }

    async fn cancel_order(
        &self,
        request: Request<pb::CancelOrderRequest>,
    ) -> std::result::Result<Response<pb::Order>, Status> {
        Ok(Response::new(self.cancel(request.into_inner()).await?))
    }

    async fn report_order_payment(
        &self,
        request: Request<pb::ReportOrderPaymentRequest>,
    ) -> std::result::Result<Response<pb::Order>, Status> {
        Ok(Response::new(self.report_payment(request.into_inner()).await?))
    }

    async fn top_up_order(
        &self,
        request: Request<pb::TopUpOrderRequest>,
    ) -> std::result::Result<Response<pb::TopUpOrderResponse>, Status> {
        Ok(Response::new(self.top_up(request.into_inner()).await?))
    }

    async fn sync_customer_password(
        &self,
        request: Request<pb::SyncCustomerPasswordRequest>,
    ) -> std::result::Result<Response<pb::SyncCustomerPasswordResponse>, Status> {
        Ok(Response::new(self.sync_password(request.into_inner()).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_and_settling() {
        assert!(valid_email("a.b@example.com"));
        assert!(!valid_email("a b@example.com") && !valid_email("nobody") && !valid_email("a@b"));
        assert!(settles("ACTIVE", false) && !settles("ACTIVE", true));
        assert!(settles("EXPIRED", true) && !settles("UNKNOWN_OUTCOME", false));
    }
}

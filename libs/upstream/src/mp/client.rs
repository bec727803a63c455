use std::fmt;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::sign::{self, SigningInput};
use super::types::*;
use super::wire;
use crate::config::MpConfig;
use crate::error::{ErrorKind, Upstream, UpstreamError};
use crate::http::{HttpClient, Idempotency, decode_json};

const UP: Upstream = Upstream::Mp;
const CONTENT_TYPE: &str = "application/json";

/// The MP client. Cheap to share (`Arc<MpClient>`); holds one `reqwest::Client`.
pub struct MpClient {
    cfg: MpConfig,
    http: HttpClient,
}

impl fmt::Debug for MpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpClient")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn rid(request_id: &str) -> Option<String> {
    (!request_id.is_empty()).then(|| request_id.chars().take(500).collect())
}

fn decode_err(call: &'static str, mutating: bool, msg: String) -> UpstreamError {
    UpstreamError::new(UP, call, ErrorKind::Decode(msg)).mutating(mutating)
}

impl MpClient {
    /// Builds the client.
    pub fn new(cfg: MpConfig) -> Result<Self, UpstreamError> {
        let http = HttpClient::new(UP, cfg.http.clone())?;
        Ok(Self { cfg, http })
    }

    /// The settings.
    pub fn config(&self) -> &MpConfig {
        &self.cfg
    }

    /// The transport (breaker state, shared `reqwest::Client`).
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// Builds a signed request. `query` pairs are sent exactly as canonicalised.
    fn signed(
        &self,
        client: &reqwest::Client,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> reqwest::RequestBuilder {
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let input = SigningInput {
            method: method.as_str(),
            path,
            query,
            access_key: &self.cfg.access_key,
            date: &date,
            signed_headers: &[
                ("Accept-Language", &self.cfg.language),
                ("Content-Type", CONTENT_TYPE),
            ],
        };
        let signature = sign::signature(self.cfg.secret_key.expose(), &input);
        let mut url = format!("{}{}", self.cfg.base_url.trim_end_matches('/'), path);
        let q = sign::canonical_query(query);
        if !q.is_empty() {
            url.push('?');
            url.push_str(&q);
        }
        let mut rb = client
            .request(method, url)
            .header(sign::HEADER_ACCESS_KEY, &self.cfg.access_key)
            .header(sign::HEADER_ALGORITHM, sign::ALGORITHM)
            .header("Date", &date)
            .header(sign::HEADER_SIGNED_HEADERS, sign::SIGNED_HEADERS.join(";"))
            .header("Accept-Language", &self.cfg.language)
            .header("Content-Type", CONTENT_TYPE)
            .header(sign::HEADER_SIGNATURE, signature);
        let body = body.unwrap_or_default();
        if self.cfg.sign_body_digest {
            rb = rb.header(sign::HEADER_DIGEST, sign::body_digest(body));
        }
        if !body.is_empty() {
            rb = rb.body(body.to_vec());
        }
        rb
    }

    fn unwrap_envelope<T>(call: &'static str, mutating: bool, body: &[u8]) -> Result<Option<T>, UpstreamError>
    where
        T: DeserializeOwned,
    {
        let env: wire::Envelope<T> = decode_json(UP, call, mutating, body)?;
        if env.code != wire::CODE_OK {
            return Err(UpstreamError::new(
                UP,
                call,
                ErrorKind::Upstream {
                    code: env.code,
                    message: env.msg.unwrap_or_default(),
                    fms: None,
                },
            ));
        }
        Ok(env.data)
    }

    async fn get<T: DeserializeOwned>(
        &self,
        call: &'static str,
        path: &'static str,
        order_code: Option<&str>,
        request_id: &str,
    ) -> Result<Option<T>, UpstreamError> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(oc) = order_code {
            query.push(("orderCode", oc));
        }
        let rid = rid(request_id);
        if let Some(r) = rid.as_deref() {
            query.push(("requestId", r));
        }
        let resp = self
            .http
            .send(call, request_id, Idempotency::Read, |c| {
                Ok(self.signed(c, Method::GET, path, &query, None))
            })
            .await?;
        Self::unwrap_envelope(call, false, &resp.body)
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        call: &'static str,
        path: &'static str,
        body: &B,
        request_id: &str,
    ) -> Result<Option<T>, UpstreamError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| UpstreamError::new(UP, call, ErrorKind::Invalid(e.to_string())))?;
        let resp = self
            .http
            .send(call, request_id, Idempotency::Mutation, |c| {
                Ok(self.signed(c, Method::POST, path, &[], Some(&bytes)))
            })
            .await?;
        Self::unwrap_envelope(call, true, &resp.body)
    }

    /// `GET v2/productList`: the products we may sell. Rows that do not decode fail the call.
    pub async fn product_list(&self, request_id: &str) -> Result<Vec<Product>, UpstreamError> {
        const CALL: &str = "productList";
        let rows: Vec<wire::Product> = self
            .get(CALL, wire::PATH_PRODUCT_LIST, None, request_id)
            .await?
            .unwrap_or_default();
        rows.into_iter()
            .map(|r| Product::try_from(r).map_err(|m| decode_err(CALL, false, m)))
            .collect()
    }

    /// `POST v2/activationCode`: creates an order and returns the eSIM + QR. Sent exactly
    /// once: on a timeout the error's `outcome_unknown()` is true — reconcile, don't resend
    /// (MP's `requestId` is not an idempotency key).
    pub async fn activation_code(
        &self,
        order: &CreateOrder,
        request_id: &str,
    ) -> Result<CreatedOrder, UpstreamError> {
        const CALL: &str = "activationCode";
        let body = wire::ActivationCodeRequest {
            goods_id: order.goods_id,
            product_id: order.product_id,
            order_quantity: order.cycles,
            iccid: order.iccid.as_ref().map(|i| i.to_string()),
            price: order.price,
            activate_flag: order.activate.map(|a| if a { "yes" } else { "no" }.to_owned()),
            request_id: rid(request_id),
        };
        let data: wire::ActivationCodeData = self
            .post(CALL, wire::PATH_ACTIVATION_CODE, &body, request_id)
            .await?
            .ok_or_else(|| decode_err(CALL, true, "data is null".into()))?;
        CreatedOrder::try_from(data).map_err(|m| decode_err(CALL, true, m))
    }

    /// `POST v2/topUp`: adds the order's period again (not allowed once finished).
    pub async fn top_up(&self, order_code: &str, request_id: &str) -> Result<TopUp, UpstreamError> {
        const CALL: &str = "topUp";
        let body = wire::TopUpRequest {
            order_code: order_code.to_owned(),
            request_id: rid(request_id),
        };
        let data: wire::TopUpData = self
            .post(CALL, wire::PATH_TOP_UP, &body, request_id)
            .await?
            .ok_or_else(|| decode_err(CALL, true, "data is null".into()))?;
        TopUp::try_from(data).map_err(|m| decode_err(CALL, true, m))
    }

    /// `GET queryOrderStatus`: `None` when MP has nothing (its all-null row).
    pub async fn query_order_status(
        &self,
        order_code: &str,
        request_id: &str,
    ) -> Result<Option<Vec<OrderStatusInfo>>, UpstreamError> {
        const CALL: &str = "queryOrderStatus";
        let rows: Vec<wire::OrderStatusRow> = self
            .get(CALL, wire::PATH_QUERY_ORDER_STATUS, Some(order_code), request_id)
            .await?
            .unwrap_or_default();
        let rows: Vec<OrderStatusInfo> = rows
            .into_iter()
            .filter(|r| !is_null_status_row(r))
            .map(|r| OrderStatusInfo::try_from(r).map_err(|m| decode_err(CALL, false, m)))
            .collect::<Result<_, _>>()?;
        Ok((!rows.is_empty()).then_some(rows))
    }

    /// `GET queryTraffic`: `None` when MP has nothing (its all-null row).
    pub async fn query_traffic(
        &self,
        order_code: &str,
        request_id: &str,
    ) -> Result<Option<Vec<Traffic>>, UpstreamError> {
        const CALL: &str = "queryTraffic";
        let rows: Vec<wire::TrafficRow> = self
            .get(CALL, wire::PATH_QUERY_TRAFFIC, Some(order_code), request_id)
            .await?
            .unwrap_or_default();
        let rows: Vec<Traffic> = rows
            .into_iter()
            .filter(|r| !is_null_traffic_row(r))
            .map(|r| Traffic::try_from(r).map_err(|m| decode_err(CALL, false, m)))
            .collect::<Result<_, _>>()?;
        Ok((!rows.is_empty()).then_some(rows))
    }

    /// `GET v2/queryHistoryDailyTraffic`: `None` when MP has nothing.
    pub async fn query_history_daily_traffic(
        &self,
        order_code: &str,
        request_id: &str,
    ) -> Result<Option<DailyTraffic>, UpstreamError> {
        const CALL: &str = "queryHistoryDailyTraffic";
        let data: Option<wire::DailyTrafficData> = self
            .get(
                CALL,
                wire::PATH_QUERY_HISTORY_DAILY_TRAFFIC,
                Some(order_code),
                request_id,
            )
            .await?;
        match data {
            None => Ok(None),
            Some(d) => DailyTraffic::from_wire(d).map_err(|m| decode_err(CALL, false, m)),
        }
    }

    /// `POST switchOrder`: ON / SUSPEND / RESTART / OFF.
    pub async fn switch_order(
        &self,
        order_code: &str,
        button: wire::SwitchButton,
        request_id: &str,
    ) -> Result<(), UpstreamError> {
        let body = wire::SwitchOrderRequest {
            order_code: order_code.to_owned(),
            switch_button: button,
            request_id: rid(request_id),
        };
        let _: Option<serde_json::Value> = self
            .post("switchOrder", wire::PATH_SWITCH_ORDER, &body, request_id)
            .await?;
        Ok(())
    }

    /// `POST saveAlarmCallbackInterface`: registers our alarm URL (method POST). Returns
    /// the URL MP saved.
    pub async fn save_alarm_callback_interface(
        &self,
        http_url: &str,
        request_id: &str,
    ) -> Result<Option<String>, UpstreamError> {
        let body = wire::SaveAlarmCallbackRequest {
            reseller_code: self.cfg.reseller_code.clone(),
            http_method: "POST".into(),
            http_url: http_url.to_owned(),
            request_id: rid(request_id),
        };
        self.post(
            "saveAlarmCallbackInterface",
            wire::PATH_SAVE_ALARM_CALLBACK,
            &body,
            request_id,
        )
        .await
    }

    /// Decodes the body MP POSTs to our alarm URL.
    pub fn decode_alarm(body: &[u8]) -> Result<Alarm, UpstreamError> {
        const CALL: &str = "alarmCallback";
        let w: wire::AlarmCallback = decode_json(UP, CALL, false, body)?;
        Alarm::try_from(w).map_err(|m| decode_err(CALL, false, m))
    }
}

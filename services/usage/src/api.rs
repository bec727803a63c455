//! `esim.usage.v1.UsageService`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use esim_proto::r#type::v1::Provider;
use esim_proto::usage::v1::{self as pb, usage_service_server::UsageService};
use esim_upstream::mp::DailyTraffic;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveModelTrait, EntityTrait};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::Core;
use crate::callback;
use crate::convert::{self, check_request_id, parse_cursor, parse_name};
use crate::entity::esim;
use crate::error::{Result, UsageError};
use crate::store::{self, AlertFilter};

/// A gap in the cursor sequence (an id taken by a transaction not yet committed, or rolled
/// back) is waited for this long before the stream moves past it; commits take milliseconds.
const GAP_GRACE: Duration = Duration::from_secs(2);
/// Alerts read per round of a watch stream.
const WATCH_BATCH: u64 = 256;

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct UsageApi {
    core: Arc<Core>,
}

impl UsageApi {
    /// The API over shared state.
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    async fn tracked(&self, id: &str) -> Result<esim::Model> {
        store::find_esim(&self.core.db, id)
            .await?
            .ok_or_else(|| UsageError::NotFound(format!("esims/{id}")))
    }

    async fn start_tracking(&self, req: pb::StartUsageTrackingRequest) -> Result<pb::Usage> {
        check_request_id(&req.request_id)?;
        let esim_id = parse_name("esim", "esims", &req.esim)?.to_owned();
        let order_id = parse_name("order", "orders", &req.order)?.to_owned();
        let provider = Provider::try_from(req.provider)
            .ok()
            .and_then(convert::provider_text)
            .ok_or_else(|| UsageError::invalid("provider", "must be MP, FMS or SFT"))?;
        let iccid = match req.iccid.trim() {
            "" => None,
            raw => Some(
                raw.parse::<esim_domain::Iccid>()
                    .map_err(|e| UsageError::invalid("iccid", e.to_string()))?
                    .to_string(),
            ),
        };
        let mut codes: Vec<String> = Vec::new();
        for (i, code) in req.mp_order_codes.iter().enumerate() {
            let code = code.trim();
            if code.is_empty()
                || code.len() > 128
                || code.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(UsageError::invalid(
                    format!("mp_order_codes[{i}]"),
                    "must be an MP order code (1-128 characters, no spaces)",
                ));
            }
            if !codes.iter().any(|c| c == code) {
                codes.push(code.to_owned());
            }
        }
        let sft_endpoint = Some(req.sft_endpoint_id.trim().to_owned()).filter(|s| !s.is_empty());
        let fms_order = Some(req.fms_order_no.trim().to_owned()).filter(|s| !s.is_empty());
        match provider {
            "MP" if codes.is_empty() => {
                return Err(UsageError::invalid("mp_order_codes", "is required for MP"));
            }
            "SFT" if sft_endpoint.is_none() => {
                return Err(UsageError::invalid("sft_endpoint_id", "is required for SFT"));
            }
            "FMS" if fms_order.is_none() => {
                return Err(UsageError::invalid("fms_order_no", "is required for FMS"));
            }
            _ => {}
        }
        for (field, value) in [("sft_endpoint_id", &sft_endpoint), ("fms_order_no", &fms_order)] {
            if let Some(value) = value {
                esim_runtime::api::text(value, field, esim_domain::TextRule::required(128))?;
            }
        }
        if req.plan_data_bytes < 0 {
            return Err(UsageError::invalid("plan_data_bytes", "must not be negative"));
        }
        let plan_end = req
            .plan_end_time
            .as_ref()
            .map(|t| convert::from_timestamp(t, "plan_end_time"))
            .transpose()?;

        let now = store::stored_time(Utc::now());
        let plan_end = plan_end.map(store::stored_time);
        let fresh = esim::Model {
            esim: esim_id.clone(),
            order_name: order_id,
            provider: provider.to_owned(),
            iccid,
            sft_endpoint_id: sft_endpoint,
            fms_order_no: fms_order,
            plan_data_bytes: req.plan_data_bytes,
            plan_end_time: plan_end,
            alerted: String::new(),
            next_poll_time: now,
            lease_until: None,
            lease_owner: None,
            create_time: now,
            update_time: now,
        };
        // The common case, an eSIM tracked for the first time: no snapshot to read back either.
        if store::track_new(&self.core.db, &fresh, &codes).await? {
            return Ok(convert::usage(&fresh, None, None));
        }
        let txn = esim_runtime::db::begin_write(&self.core.db).await?;
        let existing = store::find_esim(&txn, &esim_id).await?;
        if let Some(row) = &existing
            && row.provider != provider
        {
            return Err(UsageError::invalid(
                "provider",
                format!("the eSIM is tracked with provider {}", row.provider),
            ));
        }
        for code in &codes {
            if let Some(owner) = store::esim_of_mp_order(&txn, code).await?
                && owner.esim != esim_id
            {
                return Err(UsageError::FailedPrecondition(format!(
                    "MP order code {code} is tracked for another eSIM"
                )));
            }
        }
        let tracked_before = existing.is_some();
        let row = match existing {
            // Not tracked, though the fast path above found it or a code taken: it lost a race
            // with a removal, so it is tracked as new.
            None => fresh,
            Some(mut row) => {
                // New references are added; nothing known is forgotten.
                row.order_name = fresh.order_name;
                row.iccid = fresh.iccid.or(row.iccid);
                row.sft_endpoint_id = fresh.sft_endpoint_id.or(row.sft_endpoint_id);
                row.fms_order_no = fresh.fms_order_no.or(row.fms_order_no);
                if req.plan_data_bytes > 0 {
                    row.plan_data_bytes = req.plan_data_bytes;
                }
                row.plan_end_time = fresh.plan_end_time.or(row.plan_end_time);
                row.update_time = now;
                row
            }
        };
        let active = esim::ActiveModel::from(row.clone()).reset_all();
        esim::Entity::insert(active)
            .on_conflict(
                OnConflict::column(esim::Column::Esim)
                    .update_columns([
                        esim::Column::OrderName,
                        esim::Column::Iccid,
                        esim::Column::SftEndpointId,
                        esim::Column::FmsOrderNo,
                        esim::Column::PlanDataBytes,
                        esim::Column::PlanEndTime,
                        esim::Column::UpdateTime,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        store::add_mp_codes(&txn, &esim_id, &codes, now).await?;
        // Snapshots are taken of tracked eSIMs only: a new one has none to read.
        let latest = if tracked_before {
            store::latest_snapshot(&txn, &esim_id).await?
        } else {
            None
        };
        txn.commit().await?;
        Ok(convert::usage(&row, latest.as_ref(), None))
    }

    async fn daily(
        &self,
        req: pb::ListDailyUsageRequest,
        request_id: &str,
    ) -> Result<pb::ListDailyUsageResponse> {
        let esim_id = parse_name("parent", "esims", &req.parent)?;
        let start = convert::from_date(req.start_date.as_ref(), "start_date")?;
        let end = convert::from_date(req.end_date.as_ref(), "end_date")?;
        if end < start {
            return Err(UsageError::invalid("end_date", "must not be before start_date"));
        }
        if (end - start).num_days() > 366 {
            return Err(UsageError::invalid(
                "end_date",
                "must be at most 366 days after start_date",
            ));
        }
        let page_size = match req.page_size {
            0 => 31,
            n @ 1..=366 => u64::try_from(n).unwrap_or(31),
            _ => return Err(UsageError::invalid("page_size", "must be between 0 and 366")),
        };
        let from = if req.page_token.is_empty() {
            start
        } else {
            NaiveDate::parse_from_str(&req.page_token, "%Y-%m-%d")
                .ok()
                .filter(|d| *d >= start && *d <= end)
                .ok_or_else(|| UsageError::invalid("page_token", "is not a token of this range"))?
        };
        let row = self.tracked(esim_id).await?;
        let mut stale = false;
        // The first page asks the upstream; later pages read what it stored.
        if row.provider == "MP" && req.page_token.is_empty() {
            match self.fetch_daily(&row, request_id).await {
                Ok(days) => store::upsert_daily(&self.core.db, &row.esim, &days, Utc::now()).await?,
                Err(err) => {
                    tracing::warn!(esim = %row.esim, error = %err, "daily usage refresh failed");
                    stale = true;
                }
            }
        }
        let day = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
        let mut rows =
            store::daily_range(&self.core.db, &row.esim, &day(from), &day(end), page_size + 1).await?;
        let next_page_token = if rows.len() as u64 > page_size {
            let next = rows.remove(page_size as usize);
            rows.truncate(page_size as usize);
            next.day
        } else {
            String::new()
        };
        let daily_usage = rows
            .iter()
            .map(|r| {
                let date = NaiveDate::parse_from_str(&r.day, "%Y-%m-%d")
                    .map_err(|e| UsageError::Internal(format!("stored day {:?}: {e}", r.day)))?;
                Ok(pb::DailyUsage {
                    date: Some(convert::date(date)),
                    used_bytes: r.used_bytes,
                })
            })
            .collect::<Result<_>>()?;
        Ok(pb::ListDailyUsageResponse {
            daily_usage,
            next_page_token,
            stale,
        })
    }

    /// Every day MP reports for the eSIM's orders, summed per day. Identical answers (alias
    /// codes of one order) count once.
    async fn fetch_daily(
        &self,
        row: &esim::Model,
        request_id: &str,
    ) -> std::result::Result<Vec<(String, i64)>, Box<dyn std::error::Error + Send + Sync>> {
        let codes = store::mp_codes(&self.core.db, &row.esim).await?;
        let mut answers: Vec<DailyTraffic> = Vec::new();
        for code in &codes {
            if let Some(history) = self.core.mp.query_history_daily_traffic(code, request_id).await?
                && !answers.contains(&history)
            {
                answers.push(history);
            }
        }
        let mut per_day: std::collections::BTreeMap<NaiveDate, u64> = std::collections::BTreeMap::new();
        for history in &answers {
            for d in &history.days {
                *per_day.entry(d.date).or_default() += d.used_bytes;
            }
        }
        Ok(per_day
            .into_iter()
            .map(|(d, b)| {
                (
                    d.format("%Y-%m-%d").to_string(),
                    i64::try_from(b).unwrap_or(i64::MAX),
                )
            })
            .collect())
    }

    fn filter(esim: &str, kinds: &[i32], start: Option<&prost_types::Timestamp>) -> Result<AlertFilter> {
        let esim = if esim.is_empty() {
            None
        } else {
            Some(parse_name("esim", "esims", esim)?.to_owned())
        };
        for (i, kind) in kinds.iter().enumerate() {
            match pb::AlertKind::try_from(*kind) {
                Ok(pb::AlertKind::Unspecified) | Err(_) => {
                    return Err(UsageError::invalid(format!("kinds[{i}]"), "is not an alert kind"));
                }
                Ok(_) => {}
            }
        }
        Ok(AlertFilter {
            esim,
            kinds: kinds.to_vec(),
            create_time_start: start
                .map(|t| convert::from_timestamp(t, "create_time_start"))
                .transpose()?,
        })
    }

    async fn list(&self, req: pb::ListAlertsRequest) -> Result<pb::ListAlertsResponse> {
        let page_size = match req.page_size {
            0 => 100,
            n @ 1..=1000 => u64::try_from(n).unwrap_or(100),
            _ => return Err(UsageError::invalid("page_size", "must be between 0 and 1000")),
        };
        let after = parse_cursor("page_token", &req.page_token)?;
        let filter = Self::filter(&req.esim, &req.kinds, req.create_time_start.as_ref())?;
        let mut rows = store::list_alerts(&self.core.db, &filter, after, page_size + 1).await?;
        let next_page_token = if rows.len() as u64 > page_size {
            rows.truncate(page_size as usize);
            rows.last().map(|r| r.id.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::ListAlertsResponse {
            alerts: rows.iter().map(convert::alert).collect(),
            next_page_token,
        })
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = std::result::Result<pb::WatchAlertsResponse, Status>> + Send>>;

/// Feeds one watcher from the alert log, in cursor order, until it goes away or the server
/// stops. Reads the table (woken by this replica's inserts, else every `watch_poll`), so
/// alerts stored by any replica arrive.
async fn watch(
    core: Arc<Core>,
    mut cursor: i64,
    filter: AlertFilter,
    tx: mpsc::Sender<std::result::Result<pb::WatchAlertsResponse, Status>>,
) {
    let mut gap_since: Option<Instant> = None;
    loop {
        // Registered before the read, so an insert right after it still wakes us.
        let notified = core.alerts_added.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let rows = match store::alerts_after(&core.db, cursor, WATCH_BATCH).await {
            Ok(rows) => rows,
            Err(err) => {
                let _ = tx.send(Err(err.into())).await;
                return;
            }
        };
        let full = rows.len() as u64 == WATCH_BATCH;
        let mut blocked = false;
        for row in rows {
            if row.id != cursor + 1 {
                let since = *gap_since.get_or_insert_with(Instant::now);
                if since.elapsed() < GAP_GRACE {
                    blocked = true;
                    break;
                }
            }
            gap_since = None;
            cursor = row.id;
            if filter.matches(&row) {
                let msg = pb::WatchAlertsResponse {
                    alert: Some(convert::alert(&row)),
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
        }
        if full && !blocked {
            continue;
        }
        let wait = if blocked {
            core.config.watch_poll.min(Duration::from_millis(100))
        } else {
            core.config.watch_poll
        };
        tokio::select! {
            () = tx.closed() => return,
            () = core.shutdown.cancelled() => return,
            () = &mut notified => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[tonic::async_trait]
impl UsageService for UsageApi {
    async fn start_usage_tracking(
        &self,
        request: Request<pb::StartUsageTrackingRequest>,
    ) -> std::result::Result<Response<pb::Usage>, Status> {
        Ok(Response::new(self.start_tracking(request.into_inner()).await?))
    }

    async fn get_usage(
        &self,
        request: Request<pb::GetUsageRequest>,
    ) -> std::result::Result<Response<pb::Usage>, Status> {
        let request_id = esim_runtime::call_context::request_id(&request);
        let req = request.into_inner();
        let id = convert::parse_usage_name(&req.name)?;
        let row = self.tracked(id).await?;
        let current = self.core.current(&row, request_id.as_str()).await?;
        Ok(Response::new(convert::usage(
            &row,
            current.snapshot.as_ref(),
            current.stale_reason,
        )))
    }

    async fn list_daily_usage(
        &self,
        request: Request<pb::ListDailyUsageRequest>,
    ) -> std::result::Result<Response<pb::ListDailyUsageResponse>, Status> {
        let request_id = esim_runtime::call_context::request_id(&request);
        Ok(Response::new(
            self.daily(request.into_inner(), request_id.as_str()).await?,
        ))
    }

    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> std::result::Result<Response<pb::ListAlertsResponse>, Status> {
        Ok(Response::new(self.list(request.into_inner()).await?))
    }

    type WatchAlertsStream = WatchStream;

    async fn watch_alerts(
        &self,
        request: Request<pb::WatchAlertsRequest>,
    ) -> std::result::Result<Response<Self::WatchAlertsStream>, Status> {
        let req = request.into_inner();
        let cursor = parse_cursor("after_cursor", &req.after_cursor)?;
        let filter = Self::filter(&req.esim, &req.kinds, None)?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(watch(self.core.clone(), cursor, filter, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn register_mp_alarm_callback(
        &self,
        request: Request<pb::RegisterMpAlarmCallbackRequest>,
    ) -> std::result::Result<Response<pb::MpAlarmCallbackRegistration>, Status> {
        let request_id = esim_runtime::call_context::request_id(&request);
        let req = request.into_inner();
        check_request_id(&req.request_id)?;
        let base = if req.callback_url.is_empty() {
            self.core.config.callback_public_url.clone().ok_or_else(|| {
                UsageError::FailedPrecondition(
                    "no callback_url given and USAGE_CALLBACK_PUBLIC_URL is not set".into(),
                )
            })?
        } else {
            callback::check_url("callback_url", &req.callback_url)?;
            req.callback_url
        };
        let registration = callback::register(&self.core, &base, request_id.as_str()).await?;
        Ok(Response::new(pb::MpAlarmCallbackRegistration {
            callback_url: registration.redacted_url,
            reseller_code: registration.reseller_code,
            register_time: Some(convert::timestamp(registration.time)),
        }))
    }
}

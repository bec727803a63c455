//! The purchase saga: a background worker that takes each order through its steps.
//!
//! Every step is persisted before it is taken (`saga_step`), and each write is guarded by the
//! order's `version`, so a concurrent API call (cancel, payment report) and the worker never
//! overwrite each other. A replica takes an order only under its lease (`lease_owner`,
//! `lease_until`: a conditional UPDATE), so N replicas never run the same step; a crashed
//! replica's lease expires and another resumes the order from its stored step.
//!
//! Upstream creates that cannot be repeated safely (MP `activationCode`, FMS `preOrderPackage`,
//! the FMS payment notification) are preceded by a marker step (`*_PLACING`, `SENDING`): finding
//! the marker after a restart means the call may have happened, and the order is resolved
//! without sending it again — MP: carried on from the eSIM provisioning recorded from MP's
//! answer (MP's answer goes to provisioning first, with usage tracking started beside it; the
//! order stores it with both outcomes in one write, sealed when provisioning could not take
//! it), else UNKNOWN_OUTCOME for an operator (MP cannot be queried by our request id); FMS
//! pre-order: FAILED (an unpaid reservation lapses by itself, nothing is charged); FMS
//! notification: resolved by `queryOrdStatusAndEmail`.
//! Peer calls (provisioning, usage) are idempotent by request ids derived from the order and
//! are retried with backoff until they succeed.
//! A step's outcome the database cannot take right now (a restart, a failover) is written
//! again for up to 30 s before the step gives up, so an upstream answer is not lost
//! to a marker found later.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use esim_context::{CallContext, RequestId};
use esim_domain::{CurrencyCode, Iccid, Money};
use esim_proto::provisioning::v1 as provisioning;
use esim_proto::usage::v1 as usage;
use esim_upstream::UpstreamError;
use esim_upstream::error::{ErrorKind, FmsCode};
use esim_upstream::fms::{
    FmsClient, FmsCredentials, PayStatus, PaymentNotice, PreOrderInput, wire::PaymentResult,
};
use esim_upstream::mp::{CreateOrder, MpClient};
use rand::Rng;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tracing::Instrument;

use crate::convert::{parse_decimal, timestamp};
use crate::crypto::CredentialCipher;
use crate::entity::{fms_account, order};
use crate::error::{OrderingError, Result};
use crate::model::{Provider, State, step};
use crate::peers::Peers;
use crate::store::{Store, through_outage};

/// How the saga worker runs.
#[derive(Debug, Clone)]
pub struct SagaConfig {
    /// This replica's lease owner id.
    pub owner: String,
    /// How long a lease lasts (extended before every step). Env `ORDERING_LEASE_SECS`.
    pub lease: Duration,
    /// How often the worker looks for due orders (it is also woken in-process).
    pub poll_interval: Duration,
    /// First delay of a retry after a failed peer or upstream call (doubled each time).
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// First `queryOrdStatusAndEmail` interval (FMS says about 2 s), growing by half each poll.
    pub fms_poll_min: Duration,
    /// Longest `queryOrdStatusAndEmail` interval.
    pub fms_poll_max: Duration,
    /// The FMS payment window after the pre-order (10 minutes).
    pub payment_window: Duration,
    /// Orders driven at once by this replica.
    pub concurrency: usize,
    /// Whether this replica runs the background worker (false: it serves the API only; payment
    /// reports still notify FMS at once). Env `ORDERING_WORKER_ENABLED`.
    pub worker_enabled: bool,
    /// Tests only: stop the worker abruptly (lease kept, as in a crash) right after an order
    /// reaches this step.
    pub crash_after_step: Option<String>,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            owner: format!("ordering-{}", uuid::Uuid::new_v4().simple()),
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_millis(500),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            fms_poll_min: Duration::from_secs(2),
            fms_poll_max: Duration::from_secs(30),
            payment_window: Duration::from_secs(600),
            concurrency: 16,
            worker_enabled: true,
            crash_after_step: None,
        }
    }
}

/// The saga: shared by the worker and by API calls that drive an order at once.
#[derive(Debug)]
pub struct Saga {
    pub(crate) store: Store,
    pub(crate) peers: Arc<dyn Peers>,
    pub(crate) mp: Arc<MpClient>,
    pub(crate) fms: Arc<FmsClient>,
    pub(crate) cipher: CredentialCipher,
    pub(crate) config: SagaConfig,
    /// Wakes the worker (a new order, a payment report).
    pub(crate) wake: Notify,
    /// Cancelled by the crash hook.
    crashed: CancellationToken,
    /// Orders being driven in this process (the worker and API calls share the lease owner id,
    /// so the lease alone does not keep them apart).
    in_flight: std::sync::Mutex<std::collections::HashSet<String>>,
    /// New orders recorded under this replica's lease, for the worker to drive at once (no
    /// scan of due orders, no separate claim).
    handoff: mpsc::UnboundedSender<Leased>,
    /// The worker's end of `handoff`, taken when it starts.
    handed_off: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Leased>>>,
}

/// An order whose lease this replica took at `since`, as stored then.
#[derive(Debug)]
pub(crate) struct Leased {
    row: order::Model,
    since: tokio::time::Instant,
    /// The creating call's context: the first steps continue its request id and trace.
    context: Option<CallContext>,
}

/// Removes an order from the in-flight set when its drive ends (however it ends).
struct InFlight<'a> {
    set: &'a std::sync::Mutex<std::collections::HashSet<String>>,
    id: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// How often a resumed `MP_PLACING` order asks provisioning for MP's answer before it is left
/// to an operator (backing off as any retry).
const MP_RESUME_ATTEMPTS: i32 = 8;

/// The reason an MP order is PROVISIONING once MP answered and provisioning recorded the eSIM.
const PLACED_AND_RECORDED: &str = "placed at MP and the eSIM recorded; starting usage tracking";

/// The id of an MP or FMS order's eSIM at provisioning: the order's own (one eSIM per order),
/// in the lower case of provisioning's ids. Chosen by us, so that usage can track the eSIM
/// while provisioning records it.
fn esim_id(order_id: &str) -> String {
    order_id.to_ascii_lowercase()
}

/// `esims/{esim_id}`.
fn esim_name(order_id: &str) -> String {
    format!("esims/{}", esim_id(order_id))
}

fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Short, credential-free text of an upstream error for `state_reason`.
fn reason_of(err: &UpstreamError) -> String {
    let text = err.to_string();
    text.chars().take(300).collect()
}

/// Whether a peer's answer means "this will not work by retrying" (a business refusal).
fn is_refusal(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::NotFound
            | Code::OutOfRange
            | Code::ResourceExhausted
    )
}

impl Saga {
    /// A saga over the store, peers and upstream clients.
    pub fn new(
        store: Store,
        peers: Arc<dyn Peers>,
        mp: Arc<MpClient>,
        fms: Arc<FmsClient>,
        cipher: CredentialCipher,
        config: SagaConfig,
    ) -> Self {
        let (handoff, handed_off) = mpsc::unbounded_channel();
        Self {
            store,
            peers,
            mp,
            fms,
            cipher,
            config,
            wake: Notify::new(),
            crashed: CancellationToken::new(),
            in_flight: std::sync::Mutex::new(std::collections::HashSet::new()),
            handoff,
            handed_off: std::sync::Mutex::new(Some(handed_off)),
        }
    }

    /// Puts a new order under this replica's lease before it is first stored, if this replica
    /// runs the worker (then the order goes to [`Saga::hand_off`] once stored).
    pub(crate) fn lease_new(&self, row: &mut order::Model) -> Option<tokio::time::Instant> {
        if !self.config.worker_enabled {
            return None;
        }
        let since = tokio::time::Instant::now();
        row.lease_owner = Some(self.config.owner.clone());
        row.lease_until = Some(Utc::now() + chrono_dur(self.config.lease));
        Some(since)
    }

    /// Gives the worker a stored order leased by [`Saga::lease_new`]. Should the worker be gone,
    /// the order is resumed after its lease expires, as after a crash.
    pub(crate) fn hand_off(&self, row: order::Model, since: tokio::time::Instant) {
        let context = esim_context::current().map(|context| CallContext {
            // The steps outlive the call: its deadline is not theirs.
            deadline: None,
            ..context
        });
        let _ = self.handoff.send(Leased { row, since, context });
    }

    /// Writes a step's outcome under this replica's lease (given back when the order parks).
    ///
    /// A write the database cannot take right now (a restart, a failover) is tried again
    /// ([`through_outage`]): the outcome may be an upstream order paid for, known only here.
    /// Sending it again is safe: should the first attempt have committed after all, the
    /// `version` guard turns the retry into a stale write (`None`), as if another replica had
    /// written first.
    async fn write(&self, old: &order::Model, new: order::Model) -> Result<Option<order::Model>> {
        through_outage("saga: storing a step's outcome", || {
            self.store.write_as(old, new.clone(), Some(&self.config.owner))
        })
        .await
    }

    /// As [`Saga::write`], the order passing through `via` on the way ([`Store::write_via`]).
    async fn write_via(
        &self,
        old: &order::Model,
        via: (State, &str),
        new: order::Model,
    ) -> Result<Option<order::Model>> {
        through_outage("saga: storing a step's outcome", || {
            self.store
                .write_via(old, via, new.clone(), Some(&self.config.owner))
        })
        .await
    }

    /// Runs the worker until `shutdown` (or the test crash hook): finds due orders, claims each
    /// under a lease and drives it as far as it can go now; new orders handed off by the API
    /// (leased already) are driven as they come, between scans.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        if !self.config.worker_enabled {
            tracing::info!("saga worker disabled in this replica");
            return;
        }
        let permits = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        let mut last_checkpoint = tokio::time::Instant::now();
        let mut handed_off = self
            .handed_off
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .expect("the saga worker runs once");
        'scan: loop {
            if shutdown.is_cancelled() || self.crashed.is_cancelled() {
                break;
            }
            match self.store.due(Utc::now(), 64).await {
                Ok(due) => {
                    for row in due {
                        let Ok(permit) = permits.clone().try_acquire_owned() else {
                            break;
                        };
                        let saga = self.clone();
                        tasks.spawn(async move {
                            let _permit = permit;
                            saga.drive(&row.id).await;
                        });
                    }
                }
                Err(err) => tracing::warn!(error = %err, "saga: cannot read due orders"),
            }
            while tasks.try_join_next().is_some() {}
            if last_checkpoint.elapsed() > Duration::from_secs(60) {
                let _ = esim_runtime::db::checkpoint(&self.store.db).await;
                last_checkpoint = tokio::time::Instant::now();
            }
            let next_scan = tokio::time::Instant::now() + self.config.poll_interval;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break 'scan,
                    _ = self.crashed.cancelled() => break 'scan,
                    _ = self.wake.notified() => break,
                    _ = tokio::time::sleep_until(next_scan) => break,
                    Some(leased) = handed_off.recv() => {
                        let saga = self.clone();
                        match permits.clone().try_acquire_owned() {
                            Ok(permit) => {
                                tasks.spawn(async move {
                                    let _permit = permit;
                                    saga.drive_leased(leased).await;
                                });
                            }
                            // Every worker slot is busy: give the lease back so the order waits
                            // in the database for a later scan, not as a task in memory (under
                            // a sustained overload those piled up without bound).
                            Err(_) => {
                                tasks.spawn(async move {
                                    let id = leased.row.id;
                                    if let Err(err) = saga.store.release(&id, &saga.config.owner).await {
                                        tracing::warn!(order = %id, error = %err, "saga: cannot release");
                                    }
                                });
                            }
                        }
                        while tasks.try_join_next().is_some() {}
                    }
                }
            }
        }
        if self.crashed.is_cancelled() {
            tasks.abort_all();
        } else {
            // Let steps in flight finish their write (an upstream call is never abandoned
            // half-recorded on a graceful stop).
            while tasks.join_next().await.is_some() {}
            // Orders handed off too late to be taken: free for another replica at once.
            handed_off.close();
            while let Ok(leased) = handed_off.try_recv() {
                if let Err(err) = self.store.release(&leased.row.id, &self.config.owner).await {
                    tracing::warn!(order = %leased.row.id, error = %err, "saga: cannot release");
                }
            }
        }
    }

    /// Claims the order and takes its due steps one after the other until it waits (for a
    /// payment, a poll interval, a retry) or is done. Returns at once if another replica (or
    /// task) holds the order.
    pub async fn drive(&self, id: &str) {
        self.drive_from(id, None).await;
    }

    /// Drives an order handed off by the API, already leased.
    async fn drive_leased(&self, leased: Leased) {
        let id = leased.row.id.clone();
        self.drive_from(&id, Some(leased)).await;
    }

    /// Drives `id`, claiming it first unless it comes `leased`, in the context of the call that
    /// created it (handed off) or of a new trace named after the order (resumed later), so every
    /// peer and upstream call of its steps carries an id that leads back to the order.
    async fn drive_from(&self, id: &str, mut leased: Option<Leased>) {
        let context = leased
            .as_mut()
            .and_then(|leased| leased.context.take())
            .unwrap_or_else(|| CallContext {
                request_id: RequestId::parse(id).unwrap_or_else(RequestId::generate),
                ..CallContext::background()
            });
        let span = tracing::info_span!(
            "saga",
            order = id,
            request_id = %context.request_id,
            trace_id = %context.trace.trace_id(),
        );
        esim_context::scope(context, self.drive_steps(id, leased))
            .instrument(span)
            .await;
    }

    async fn drive_steps(&self, id: &str, leased: Option<Leased>) {
        if !self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned())
        {
            return;
        }
        let _in_flight = InFlight {
            set: &self.in_flight,
            id: id.to_owned(),
        };
        let lease = chrono_dur(self.config.lease);
        let (mut claimed_at, mut known) = match leased {
            Some(Leased { row, since, .. }) => (since, Some(row)),
            None => match self.store.claim(id, &self.config.owner, lease).await {
                Ok(true) => (tokio::time::Instant::now(), None),
                Ok(false) => return,
                Err(err) => {
                    tracing::warn!(order = id, error = %err, "saga: cannot claim");
                    return;
                }
            },
        };
        for _ in 0..32 {
            if self.crashed.is_cancelled() {
                return;
            }
            let row = match known.take() {
                Some(row) => row,
                None => match self.store.order(id).await {
                    Ok(Some(row)) => row,
                    Ok(None) => break,
                    Err(err) => {
                        tracing::warn!(order = id, error = %err, "saga: cannot load");
                        break;
                    }
                },
            };
            if row.saga_step == step::DONE || row.next_attempt_at > Utc::now() {
                break;
            }
            // The lease must cover the step (it may wait for a slow upstream): renewed once a
            // third of it has passed.
            if claimed_at.elapsed() > self.config.lease / 3 {
                if !matches!(self.store.claim(id, &self.config.owner, lease).await, Ok(true)) {
                    return;
                }
                claimed_at = tokio::time::Instant::now();
            }
            match self.step(row).await {
                Ok(Some(new)) => {
                    if self.config.crash_after_step.as_deref() == Some(new.saga_step.as_str()) {
                        tracing::warn!(order = id, step = %new.saga_step, "saga: simulated crash");
                        self.crashed.cancel();
                        return;
                    }
                    if Store::parks(&new) {
                        return; // the write gave the lease back
                    }
                    known = Some(new);
                }
                Ok(None) => {} // someone changed the order in between: reload and decide again
                Err(err) => {
                    tracing::warn!(order = id, error = %err, "saga: step failed");
                    break;
                }
            }
        }
        if let Err(err) = self.store.release(id, &self.config.owner).await {
            tracing::warn!(order = id, error = %err, "saga: cannot release");
        }
    }

    /// Takes one step of `o`. Returns the stored row after it, `None` if `o` was stale.
    async fn step(&self, o: order::Model) -> Result<Option<order::Model>> {
        tracing::debug!(order = %o.id, step = %o.saga_step, "saga step");
        match o.saga_step.as_str() {
            step::MP_PLACE => self.mp_place(o).await,
            step::MP_PLACING => self.mp_resume(o).await,
            step::FMS_ACCOUNT => self.fms_account(o).await,
            step::FMS_PREORDER => self.fms_preorder(o).await,
            step::FMS_PREORDERING => {
                let reason = "the service stopped while the FMS pre-order was being placed; an unpaid \
                              FMS reservation lapses after 10 minutes and nothing was charged: place \
                              a new order";
                self.finish(&o, State::Failed, reason, |_| {}).await
            }
            step::FMS_AWAIT_PAYMENT => self.fms_await_payment(o).await,
            step::FMS_NOTIFY => self.fms_notify(o).await,
            step::FMS_POLL => self.fms_poll(o).await,
            step::FMS_RELEASE => self.fms_release(o).await,
            step::SFT_PROVISION | step::SFT_PROVISIONING => self.sft_provision(o).await,
            step::RECORD_ESIM => self.record_esim(o).await,
            step::TRACK => self.track(o).await,
            other => Err(OrderingError::Internal(format!("unknown saga step {other:?}"))),
        }
    }

    // ---- building the next row -------------------------------------------------------------

    fn advanced(
        o: &order::Model,
        next_step: &str,
        state: Option<State>,
        reason: Option<&str>,
    ) -> order::Model {
        let mut n = o.clone();
        n.saga_step = next_step.to_owned();
        if let Some(s) = state {
            n.state = s.as_str().to_owned();
        }
        if let Some(r) = reason {
            n.state_reason = r.to_owned();
        }
        n.attempts = 0;
        n.last_error = None;
        n.next_attempt_at = Utc::now();
        n
    }

    /// Ends the saga in `state` with `reason` (after `edit`).
    async fn finish(
        &self,
        o: &order::Model,
        state: State,
        reason: &str,
        edit: impl FnOnce(&mut order::Model),
    ) -> Result<Option<order::Model>> {
        let mut n = Self::advanced(o, step::DONE, Some(state), Some(reason));
        edit(&mut n);
        self.write(o, n).await
    }

    fn backoff(&self, attempts: i32) -> Duration {
        let exp = 2u32.saturating_pow(attempts.clamp(0, 16) as u32);
        let base = self
            .config
            .retry_base
            .saturating_mul(exp)
            .min(self.config.retry_max);
        let jitter = rand::rng().random_range(0.8..1.2);
        base.mul_f64(jitter)
    }

    /// Stays on `retry_step` and tries again later, recording why.
    async fn retry(&self, o: &order::Model, retry_step: &str, why: String) -> Result<Option<order::Model>> {
        let n = Self::retried(o, retry_step, why, self.backoff(o.attempts));
        self.write(o, n).await
    }

    /// `o` on `retry_step` again after `delay`, with why.
    fn retried(o: &order::Model, retry_step: &str, why: String, delay: Duration) -> order::Model {
        let mut n = o.clone();
        n.saga_step = retry_step.to_owned();
        n.attempts = o.attempts.saturating_add(1);
        n.next_attempt_at = Utc::now() + chrono_dur(delay);
        tracing::info!(order = %o.id, step = retry_step, attempt = n.attempts, error = %why, "saga: retrying later");
        n.last_error = Some(why);
        n
    }

    /// Persists `marker` as the step before an upstream call that cannot be repeated.
    async fn mark(
        &self,
        o: &order::Model,
        marker: &str,
        state: Option<State>,
        reason: Option<&str>,
    ) -> Result<Option<order::Model>> {
        let mut n = o.clone();
        n.saga_step = marker.to_owned();
        if let Some(s) = state {
            n.state = s.as_str().to_owned();
        }
        if let Some(r) = reason {
            n.state_reason = r.to_owned();
        }
        self.write(o, n).await
    }

    // ---- MP ----------------------------------------------------------------------------

    async fn mp_place(&self, o: order::Model) -> Result<Option<order::Model>> {
        let iccid = o
            .target_iccid
            .as_deref()
            .map(|i| i.parse::<Iccid>())
            .transpose()
            .map_err(|e| OrderingError::Internal(format!("stored target ICCID: {e}")))?;
        let request = CreateOrder {
            product_id: o.mp_product_id.unwrap_or_default(),
            goods_id: o.mp_goods_id,
            cycles: u32::try_from(o.cycle_count).ok(),
            iccid,
            price: Some(parse_decimal(&o.total_retail)?),
            activate: Some(o.activate_immediately),
        };
        let Some(o) = self.mark(&o, step::MP_PLACING, None, None).await? else {
            return Ok(None);
        };
        match self.mp.activation_code(&request, &o.id).await {
            Ok(created) => {
                let mut placed = Self::advanced(
                    &o,
                    step::RECORD_ESIM,
                    Some(State::Provisioning),
                    Some("placed at MP; recording the eSIM"),
                );
                placed.iccid = Some(created.iccid.to_string());
                placed.mp_order_code = Some(created.order_code.clone());
                // Provisioning holds MP's answer once `CreateEsim` succeeds, where a resumed
                // order finds it (`mp_resume`): the order stores the answer with the outcome of
                // both calls, in one write for the whole purchase.
                let mut next = self
                    .record_and_track(
                        &placed,
                        created.activation_code.expose().to_owned(),
                        PLACED_AND_RECORDED,
                    )
                    .await?;
                if next.saga_step == step::RECORD_ESIM {
                    // The order's row is the only copy: it keeps the code sealed until
                    // provisioning takes it.
                    next.activation_code_enc = Some(
                        self.cipher
                            .encrypt(created.activation_code.expose(), &format!("orders/{}", o.id))?,
                    );
                }
                self.store_mp_answer(o, next).await
            }
            Err(err) if err.outcome_unknown() => {
                let reason = format!(
                    "{}: the order may exist at MP, which cannot be queried by our request id, so it \
                     is not sent again; an operator must check MP's orders and resolve it",
                    reason_of(&err)
                );
                self.finish(&o, State::UnknownOutcome, &reason, |_| {}).await
            }
            Err(err) if err.is_retryable() => {
                // Definitely not carried out (breaker open, 429): the marker goes back.
                self.retry(&o, step::MP_PLACE, reason_of(&err)).await
            }
            Err(err) => {
                self.finish(
                    &o,
                    State::Failed,
                    &format!("MP refused the order: {}", reason_of(&err)),
                    |_| {},
                )
                .await
            }
        }
    }

    /// Stores `next`, the order with MP's answer, over `o`, on `MP_PLACING`. An order going
    /// straight to ACTIVE passes through PROVISIONING on the way, as its history shows.
    async fn store_mp_answer(&self, o: order::Model, next: order::Model) -> Result<Option<order::Model>> {
        let mut current = o;
        loop {
            let stored = if next.state == State::Provisioning.as_str() {
                self.write(&current, next.clone()).await?
            } else {
                self.write_via(&current, (State::Provisioning, PLACED_AND_RECORDED), next.clone())
                    .await?
            };
            if stored.is_some() {
                return Ok(stored);
            }
            // Our lease ran out during a slow call and another replica may have marked the
            // order UNKNOWN_OUTCOME: we know the outcome, so it must not be lost.
            match self.store.order(&current.id).await? {
                Some(reloaded)
                    if reloaded.mp_order_code.is_none()
                        && (reloaded.saga_step == step::MP_PLACING
                            || reloaded.state == State::UnknownOutcome.as_str()) =>
                {
                    current = reloaded;
                }
                _ => return Ok(None),
            }
        }
    }

    /// An order found on the `MP_PLACING` marker: the service stopped (or could not store MP's
    /// answer) while `activationCode` was under way. Provisioning may have recorded the eSIM
    /// from MP's answer (see `mp_place`); then the order carries on from it. Otherwise the
    /// order may exist at MP, which cannot be queried by our request id, so it is not sent
    /// again: UNKNOWN_OUTCOME, for an operator.
    async fn mp_resume(&self, o: order::Model) -> Result<Option<order::Model>> {
        const UNKNOWN: &str = "the service stopped while MP activationCode was being sent: the order may \
                               exist at MP, which cannot be queried by our request id, so it is not \
                               sent again; an operator must check MP's orders and resolve it";
        match self.peers.esim_of_order(&format!("orders/{}", o.id)).await {
            Ok(Some(esim)) if !esim.upstream_order_code.is_empty() => {
                let mut n = Self::advanced(
                    &o,
                    step::TRACK,
                    Some(State::Provisioning),
                    Some(
                        "placed at MP and the eSIM recorded before the service stopped; starting usage tracking",
                    ),
                );
                n.iccid = Some(esim.iccid);
                n.mp_order_code = Some(esim.upstream_order_code);
                n.esim_name = Some(esim.name);
                self.write(&o, n).await
            }
            Ok(_) => self.finish(&o, State::UnknownOutcome, UNKNOWN, |_| {}).await,
            // Provisioning may hold the answer: ask again a few times before an operator must.
            Err(status) if o.attempts < MP_RESUME_ATTEMPTS => {
                self.retry(
                    &o,
                    step::MP_PLACING,
                    format!("provisioning ListEsims: {}", status.message()),
                )
                .await
            }
            Err(status) => {
                let reason = format!(
                    "{UNKNOWN} (provisioning, which may hold MP's answer, could not be asked: {})",
                    status.message()
                );
                self.finish(&o, State::UnknownOutcome, &reason, |_| {}).await
            }
        }
    }

    // ---- FMS ---------------------------------------------------------------------------

    fn fms_aad(customer_reference: &str) -> String {
        format!("fms-accounts/{customer_reference}")
    }

    /// The FMS login of an account.
    pub(crate) fn fms_credentials(&self, account: &fms_account::Model) -> Result<FmsCredentials> {
        let md5 = self
            .cipher
            .decrypt(&account.passwd_enc, &Self::fms_aad(&account.customer_reference))?;
        Ok(FmsCredentials::from_md5(account.email.clone(), md5))
    }

    /// Seals a password's MD5 for an account row.
    pub(crate) fn seal_password(&self, customer_reference: &str, plain: &str) -> Result<String> {
        self.cipher.encrypt(
            FmsCredentials::from_plain(String::new(), plain)
                .passwd_md5
                .expose(),
            &Self::fms_aad(customer_reference),
        )
    }

    async fn fms_account(&self, o: order::Model) -> Result<Option<order::Model>> {
        let stored = match self.store.fms_account(&o.customer_reference).await? {
            Some(a) => a,
            None => {
                // A password only we know; FMS sees its MD5, which is what we keep (encrypted).
                let password: String = rand::rng()
                    .sample_iter(rand::distr::Alphanumeric)
                    .take(24)
                    .map(char::from)
                    .collect();
                let now = Utc::now();
                self.store
                    .insert_fms_account(fms_account::Model {
                        customer_reference: o.customer_reference.clone(),
                        email: o.customer_email.clone(),
                        passwd_enc: self.seal_password(&o.customer_reference, &password)?,
                        status: "NEW".into(),
                        create_time: now,
                        update_time: now,
                    })
                    .await?
            }
        };
        if stored.status == "REGISTERED" {
            let n = Self::advanced(&o, step::FMS_PREORDER, None, None);
            return self.write(&o, n).await;
        }
        // An account whose password was synced before the first order has no e-mail yet.
        let mut account = stored.clone();
        if account.email.is_empty() {
            account.email = o.customer_email.clone();
        }
        let creds = self.fms_credentials(&account)?;
        let registered = match self.fms.email_register(&creds, &o.id).await {
            Ok(()) => Ok(()),
            // Already registered (an earlier attempt whose answer was lost, or an account made
            // elsewhere): our credentials decide.
            Err(err) if err.upstream_code().is_some() || err.outcome_unknown() => {
                self.fms.login(&creds, &o.id).await.map_err(|login| (err, login))
            }
            Err(err) => Err((err.clone(), err)),
        };
        match registered {
            Ok(()) => {
                self.store
                    .update_fms_account(&stored, &account.email, &account.passwd_enc, "REGISTERED")
                    .await?;
                let n = Self::advanced(&o, step::FMS_PREORDER, None, None);
                self.write(&o, n).await
            }
            Err((register, login)) => {
                let refused = matches!(login.kind, ErrorKind::Upstream { .. } | ErrorKind::Auth(_))
                    && register.upstream_code().is_some();
                if refused && o.attempts >= 3 {
                    let reason = format!(
                        "the customer's FMS account cannot be used ({}; login: {}): sync the \
                         password with SyncCustomerPassword and order again",
                        reason_of(&register),
                        reason_of(&login)
                    );
                    self.finish(&o, State::Failed, &reason, |_| {}).await
                } else {
                    self.retry(&o, step::FMS_ACCOUNT, reason_of(&login)).await
                }
            }
        }
    }

    async fn account_for(&self, o: &order::Model) -> Result<FmsCredentials> {
        let account = self
            .store
            .fms_account(&o.customer_reference)
            .await?
            .ok_or_else(|| OrderingError::Internal("the order's FMS account is missing".into()))?;
        self.fms_credentials(&account)
    }

    async fn fms_preorder(&self, o: order::Model) -> Result<Option<order::Model>> {
        let creds = self.account_for(&o).await?;
        let currency: CurrencyCode = o
            .currency
            .parse()
            .map_err(|_| OrderingError::Internal(format!("stored currency {:?}", o.currency)))?;
        let input = PreOrderInput {
            package_id: o.fms_package_id.unwrap_or_default(),
            package_code: o.fms_package_code.clone().unwrap_or_default(),
            money: Money::new(parse_decimal(&o.total_wholesale)?, currency),
            currency_id: o.fms_currency_id.unwrap_or_default(),
            period_num: i64::from(o.fms_period_num.unwrap_or(1)),
            package_num: i64::from(o.cycle_count.max(1)),
            discount_flag: 0,
            receive_qr_email: Some(o.customer_email.clone()).filter(|e| !e.is_empty()),
        };
        let Some(o) = self.mark(&o, step::FMS_PREORDERING, None, None).await? else {
            return Ok(None);
        };
        match self.fms.pre_order(&creds, &input, &o.id).await {
            Ok(pre) => {
                let now = Utc::now();
                let window = chrono_dur(self.config.payment_window);
                let ordered = pre.order_time.with_timezone(&Utc);
                // FMS's clock decides the window; never later than ours.
                let deadline = (ordered + window).min(now + window);
                let mut n = Self::advanced(
                    &o,
                    step::FMS_AWAIT_PAYMENT,
                    Some(State::PendingPayment),
                    Some("pre-ordered at FMS; waiting for the payment report"),
                );
                n.fms_pre_order_id = Some(pre.id);
                n.fms_order_no = Some(pre.order_no);
                n.fms_amount = Some(pre.amount.amount().to_string());
                n.fms_currency = Some(pre.amount.currency().to_string());
                n.payment_deadline = Some(deadline);
                n.next_attempt_at = deadline;
                self.write(&o, n).await
            }
            Err(err) if err.outcome_unknown() => {
                let reason = format!(
                    "{}: the pre-order may exist at FMS; it is not sent again — an unpaid FMS \
                     reservation lapses after 10 minutes and nothing was charged: place a new order",
                    reason_of(&err)
                );
                self.finish(&o, State::Failed, &reason, |_| {}).await
            }
            Err(err) if err.is_retryable() || matches!(err.kind, ErrorKind::Auth(_)) => {
                self.retry(&o, step::FMS_PREORDER, reason_of(&err)).await
            }
            Err(err) => {
                self.finish(
                    &o,
                    State::Failed,
                    &format!("FMS refused the pre-order: {}", reason_of(&err)),
                    |_| {},
                )
                .await
            }
        }
    }

    async fn fms_await_payment(&self, o: order::Model) -> Result<Option<order::Model>> {
        if o.payment_outcome.is_some() {
            let n = Self::advanced(&o, step::FMS_NOTIFY, None, None);
            return self.write(&o, n).await;
        }
        match o.payment_deadline {
            Some(deadline) if deadline > Utc::now() => {
                let mut n = o.clone();
                n.next_attempt_at = deadline;
                self.write(&o, n).await
            }
            _ => {
                self.finish(
                    &o,
                    State::Expired,
                    "no payment was reported within the 10-minute FMS payment window",
                    |_| {},
                )
                .await
            }
        }
    }

    async fn fms_notify(&self, o: order::Model) -> Result<Option<order::Model>> {
        let succeeded = o.payment_outcome.as_deref() == Some("SUCCEEDED");
        match o.payment_notify_state.as_deref() {
            Some("SENDING") | Some("UNKNOWN") => {
                // The notification may have reached FMS: resolve by query, never send twice.
                let mut n = Self::advanced(&o, step::FMS_POLL, None, None);
                n.payment_notify_state = Some("UNKNOWN".into());
                return self.write(&o, n).await;
            }
            Some("SENT") => {
                let n = Self::advanced(&o, step::FMS_POLL, None, None);
                return self.write(&o, n).await;
            }
            _ => {}
        }
        let creds = self.account_for(&o).await?;
        let currency: CurrencyCode = o
            .fms_currency
            .as_deref()
            .unwrap_or(&o.currency)
            .parse()
            .map_err(|_| OrderingError::Internal("stored FMS currency".into()))?;
        let amount = parse_decimal(o.fms_amount.as_deref().unwrap_or(&o.total_wholesale))?;
        let notice = PaymentNotice {
            pre_order_id: o.fms_pre_order_id.unwrap_or_default(),
            date_time: o.payment_time.unwrap_or_else(Utc::now).timestamp(),
            // FMS checks the amount against its pre-order: what FMS charges us.
            paid: Money::new(amount, currency),
            payment_id: o
                .payment_reference
                .clone()
                .unwrap_or_else(|| format!("failed-{}", o.id)),
            result: if succeeded {
                PaymentResult::Succeeded
            } else {
                PaymentResult::Failed
            },
        };
        // Recorded before it is sent.
        let mut sending = o.clone();
        sending.payment_notify_state = Some("SENDING".into());
        let Some(o) = self.write(&o, sending).await? else {
            return Ok(None);
        };
        match self.fms.notify_payment(&creds, &notice, &o.id).await {
            Ok(()) => {
                let (state, reason) = if succeeded {
                    (
                        State::Provisioning,
                        "payment notified to FMS; waiting for the profile",
                    )
                } else {
                    (
                        State::Failed,
                        "the payment failed (reported); FMS released the pre-order",
                    )
                };
                let next = if succeeded { step::FMS_POLL } else { step::DONE };
                let mut n = Self::advanced(&o, next, Some(state), Some(reason));
                n.payment_notify_state = Some("SENT".into());
                n.payment_notify_time = Some(Utc::now());
                if succeeded {
                    n.next_attempt_at = Utc::now() + chrono_dur(self.config.fms_poll_min);
                }
                self.write(&o, n).await
            }
            Err(err) if err.fms_code() == Some(FmsCode::PreOrderTimeout) => {
                let reason = "FMS pre-order timeout 6006: the payment was reported after the 10-minute \
                              window and the profile was released; start a new order";
                self.finish(&o, State::Expired, reason, |n| {
                    n.payment_notify_state = Some("SENT".into());
                    n.refund_required = succeeded;
                })
                .await
            }
            Err(err) if err.outcome_unknown() || err.fms_code() == Some(FmsCode::Error) => {
                let mut n = Self::advanced(
                    &o,
                    step::FMS_POLL,
                    Some(State::Provisioning),
                    Some("payment notification outcome unknown; resolving by status query"),
                );
                n.payment_notify_state = Some("UNKNOWN".into());
                self.write(&o, n).await
            }
            Err(err) if err.upstream_code().is_some() => {
                let reason = format!("FMS refused the payment notification: {}", reason_of(&err));
                self.finish(&o, State::Failed, &reason, |n| {
                    n.payment_notify_state = Some("SENT".into());
                    n.refund_required = succeeded;
                })
                .await
            }
            Err(err) => {
                // Not sent (breaker open, login failed): back to PENDING, try again later.
                let mut n = o.clone();
                n.payment_notify_state = Some("PENDING".into());
                let Some(n) = self.write(&o, n).await? else {
                    return Ok(None);
                };
                self.retry(&n, step::FMS_NOTIFY, reason_of(&err)).await
            }
        }
    }

    async fn fms_poll(&self, o: order::Model) -> Result<Option<order::Model>> {
        let succeeded = o.payment_outcome.as_deref() == Some("SUCCEEDED");
        let creds = self.account_for(&o).await?;
        let pre_order = o.fms_pre_order_id.unwrap_or_default();
        let status = match self
            .fms
            .query_ord_status_and_email(&creds, pre_order, &o.id)
            .await
        {
            Ok(s) => s,
            Err(err) => return self.retry(&o, step::FMS_POLL, reason_of(&err)).await,
        };
        match status.status {
            PayStatus::Waiting => {
                let factor = 1.5f64.powi(o.attempts.clamp(0, 20));
                let wait = self
                    .config
                    .fms_poll_min
                    .mul_f64(factor)
                    .min(self.config.fms_poll_max);
                let mut n = o.clone();
                n.attempts = o.attempts.saturating_add(1);
                n.next_attempt_at = Utc::now() + chrono_dur(wait);
                self.write(&o, n).await
            }
            PayStatus::Paid => {
                let Some(code) = status.activation_code else {
                    return self
                        .retry(
                            &o,
                            step::FMS_POLL,
                            "FMS reports paid without a QR code yet".into(),
                        )
                        .await;
                };
                let iccid = match self.fms.my_esim_detail(&creds, pre_order, &o.id).await {
                    Ok(detail) => detail.and_then(|d| d.iccid).map(|i| i.to_string()),
                    Err(err) => return self.retry(&o, step::FMS_POLL, reason_of(&err)).await,
                };
                let sealed = self.cipher.encrypt(code.expose(), &format!("orders/{}", o.id))?;
                let mut n = Self::advanced(
                    &o,
                    step::RECORD_ESIM,
                    Some(State::Provisioning),
                    Some("paid at FMS; recording the eSIM"),
                );
                n.activation_code_enc = Some(sealed);
                n.iccid = iccid;
                if n.payment_notify_state.as_deref() == Some("UNKNOWN") {
                    n.payment_notify_state = Some("SENT".into());
                }
                self.write(&o, n).await
            }
            PayStatus::Failed => {
                self.finish(&o, State::Failed, "FMS reports the payment as failed", |n| {
                    n.refund_required = succeeded;
                })
                .await
            }
            PayStatus::Cancelled => {
                let (state, reason) = if succeeded {
                    (
                        State::Expired,
                        "FMS cancelled the pre-order (payment window lapsed) before the payment was confirmed",
                    )
                } else {
                    (State::Failed, "the payment failed; FMS cancelled the pre-order")
                };
                self.finish(&o, state, reason, |n| n.refund_required = succeeded)
                    .await
            }
        }
    }

    /// A cancelled FMS pre-order is released with a "payment failed" notification (sent once).
    async fn fms_release(&self, o: order::Model) -> Result<Option<order::Model>> {
        if o.payment_notify_state.is_some() {
            let n = Self::advanced(&o, step::DONE, None, None);
            return self.write(&o, n).await;
        }
        let creds = self.account_for(&o).await?;
        let currency: CurrencyCode = o
            .fms_currency
            .as_deref()
            .unwrap_or(&o.currency)
            .parse()
            .map_err(|_| OrderingError::Internal("stored FMS currency".into()))?;
        let amount = parse_decimal(o.fms_amount.as_deref().unwrap_or(&o.total_wholesale))?;
        let notice = PaymentNotice {
            pre_order_id: o.fms_pre_order_id.unwrap_or_default(),
            date_time: Utc::now().timestamp(),
            paid: Money::new(amount, currency),
            payment_id: format!("cancelled-{}", o.id),
            result: PaymentResult::Failed,
        };
        let mut sending = o.clone();
        sending.payment_notify_state = Some("SENDING".into());
        let Some(o) = self.write(&o, sending).await? else {
            return Ok(None);
        };
        let result = self.fms.notify_payment(&creds, &notice, &o.id).await;
        let mut n = Self::advanced(&o, step::DONE, None, None);
        n.payment_notify_state = Some(if result.is_ok() { "SENT" } else { "UNKNOWN" }.into());
        if let Err(err) = result {
            // Best effort: an unreleased reservation lapses by itself after 10 minutes.
            n.last_error = Some(reason_of(&err));
        }
        self.write(&o, n).await
    }

    // ---- SFT ---------------------------------------------------------------------------

    async fn sft_provision(&self, o: order::Model) -> Result<Option<order::Model>> {
        let o = if o.saga_step == step::SFT_PROVISION {
            match self
                .mark(
                    &o,
                    step::SFT_PROVISIONING,
                    Some(State::Provisioning),
                    Some("provisioning claims and activates a SIM"),
                )
                .await?
            {
                Some(o) => o,
                None => return Ok(None),
            }
        } else {
            o
        };
        let request = provisioning::ProvisionEsimRequest {
            request_id: format!("{}-provision", o.id),
            order: format!("orders/{}", o.id),
            sft_plan_id: o.sft_plan_id.clone().unwrap_or_default(),
        };
        match self.peers.provision_esim(request).await {
            Ok(esim) => {
                let mut n = Self::advanced(
                    &o,
                    step::TRACK,
                    Some(State::Provisioning),
                    Some("eSIM provisioned; starting usage tracking"),
                );
                n.esim_name = Some(esim.name);
                n.iccid = Some(esim.iccid).filter(|i| !i.is_empty());
                n.sft_endpoint_id = Some(esim.sft_endpoint_id).filter(|i| !i.is_empty());
                self.write(&o, n).await
            }
            Err(status) if is_refusal(status.code()) => {
                let reason = format!("provisioning failed: {}", status.message());
                self.finish(&o, State::Failed, &reason, |_| {}).await
            }
            Err(status) => {
                self.retry(
                    &o,
                    step::SFT_PROVISIONING,
                    format!("provisioning: {}", status.message()),
                )
                .await
            }
        }
    }

    // ---- shared tail -------------------------------------------------------------------

    async fn record_esim(&self, o: order::Model) -> Result<Option<order::Model>> {
        let Some(sealed) = o.activation_code_enc.as_deref() else {
            return Err(OrderingError::Internal("no activation code to record".into()));
        };
        let code = self.cipher.decrypt(sealed, &format!("orders/{}", o.id))?;
        let next = self
            .record_and_track(&o, code, "eSIM recorded; starting usage tracking")
            .await?;
        self.write(&o, next).await
    }

    /// Records `o`'s eSIM at provisioning (`CreateEsim`) and has usage track it, both at once:
    /// the eSIM's name is ours to give ([`esim_name`]). Returns the order to store next: ACTIVE;
    /// on TRACK to retry tracking; or `o` on RECORD_ESIM to retry both (tracking is idempotent
    /// by its request id, as `CreateEsim` is, so a crash before the write repeats them safely).
    async fn record_and_track(
        &self,
        o: &order::Model,
        activation_code: String,
        reason: &str,
    ) -> Result<order::Model> {
        let request = self.esim_request(o, activation_code)?;
        let name = esim_name(&o.id);
        let mut recorded = Self::advanced(o, step::TRACK, Some(State::Provisioning), Some(reason));
        recorded.esim_name = Some(name.clone());
        // Provisioning keeps the credential now; ordering forgets it.
        recorded.activation_code_enc = None;
        let (created, tracked) = tokio::join!(self.peers.create_esim(request), self.tracking(recorded));
        match created {
            Ok(esim) if esim.name == name => tracked,
            Ok(esim) => Err(OrderingError::Internal(format!(
                "provisioning named the eSIM {} where {name} was asked: it must honour `esim_id` \
                 (upgrade provisioning before ordering)",
                esim.name
            ))),
            // Money is spent upstream: never give up, keep the reason visible.
            Err(status) => Ok(Self::retried(
                o,
                step::RECORD_ESIM,
                format!("provisioning CreateEsim: {}", status.message()),
                self.backoff(o.attempts),
            )),
        }
    }

    /// Provisioning's `CreateEsim` for `o`'s eSIM, idempotent by a request id of the order.
    fn esim_request(
        &self,
        o: &order::Model,
        activation_code: String,
    ) -> Result<provisioning::CreateEsimRequest> {
        let provider = Provider::parse(&o.provider)
            .ok_or_else(|| OrderingError::Internal(format!("stored provider {:?}", o.provider)))?;
        Ok(provisioning::CreateEsimRequest {
            request_id: format!("{}-esim", o.id),
            esim_id: esim_id(&o.id),
            esim: Some(provisioning::Esim {
                order: format!("orders/{}", o.id),
                provider: provider.to_pb() as i32,
                iccid: o.iccid.clone().unwrap_or_default(),
                upstream_order_code: o.mp_order_code.clone().unwrap_or_default(),
                fms_order_no: o.fms_order_no.clone().unwrap_or_default(),
                ..Default::default()
            }),
            activation_code,
        })
    }

    async fn track(&self, o: order::Model) -> Result<Option<order::Model>> {
        let next = self.tracking(o.clone()).await?;
        self.write(&o, next).await
    }

    /// Has usage track `o`'s eSIM: the order to store next, ACTIVE with the saga done, or on
    /// TRACK to retry. `o` may hold fields not stored yet.
    async fn tracking(&self, o: order::Model) -> Result<order::Model> {
        let provider = Provider::parse(&o.provider)
            .ok_or_else(|| OrderingError::Internal(format!("stored provider {:?}", o.provider)))?;
        let plan_end = Utc::now()
            + chrono::Duration::days(i64::from(o.product_validity_days) * i64::from(o.cycle_count.max(1)));
        let request = usage::StartUsageTrackingRequest {
            request_id: format!("{}-track", o.id),
            esim: o.esim_name.clone().unwrap_or_default(),
            order: format!("orders/{}", o.id),
            provider: provider.to_pb() as i32,
            iccid: o.iccid.clone().unwrap_or_default(),
            mp_order_codes: o.mp_order_code.iter().cloned().collect(),
            sft_endpoint_id: o.sft_endpoint_id.clone().unwrap_or_default(),
            fms_order_no: o.fms_order_no.clone().unwrap_or_default(),
            plan_data_bytes: if o.product_unlimited {
                0
            } else {
                o.product_data_bytes
                    .saturating_mul(i64::from(o.cycle_count.max(1)))
            },
            plan_end_time: Some(timestamp(plan_end)),
        };
        match self.peers.start_tracking(request).await {
            Ok(()) => Ok(Self::advanced(
                &o,
                step::DONE,
                Some(State::Active),
                Some("the eSIM is ready"),
            )),
            Err(status) => Ok(Self::retried(
                &o,
                step::TRACK,
                format!("usage StartUsageTracking: {}", status.message()),
                self.backoff(o.attempts),
            )),
        }
    }
}

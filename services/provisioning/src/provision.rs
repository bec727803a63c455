//! The SFT provision flow: claim a Pre-Active, Attached SIM, activate its endpoint, subscribe
//! the first add-on, store it. Every step is recorded before the next one starts (`step`), so a
//! retry with the same request id resumes where the flow stopped, and every failure branch
//! ends in a recorded state:
//!
//! | failure | eSIM | SIM claim | answer |
//! |---|---|---|---|
//! | no SIM to claim | FAILED "no SIM available" | none | RESOURCE_EXHAUSTED |
//! | `fetchSIM` fails | FAILED | none | UNAVAILABLE |
//! | activation refused, or failed and the SIM is still Pre-Active | FAILED | released (deleted: the SIM is claimable again) | FAILED_PRECONDITION / UNAVAILABLE |
//! | activation timed out, or its outcome cannot be checked | FAILED | quarantined (never claimed again by itself) | UNAVAILABLE |
//! | subscription failed after retries | FAILED, reason names the endpoint's real SIM status | quarantined (the endpoint is Active without an add-on) | FAILED_PRECONDITION / UNAVAILABLE |
//!
//! A retry with the same request id of a provision that ended UNAVAILABLE and holds no SIM
//! (the rows above with no claim left) is a fresh attempt under the same eSIM; any other failed
//! provision answers FAILED_PRECONDITION with its reason, so a caller retrying on UNAVAILABLE
//! stops (`esim-sims` releases a quarantined SIM).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use backon::{ExponentialBuilder, Retryable};
use chrono::{SubsecRound, Utc};
use esim_domain::Iccid;
use esim_proto::provisioning::v1::ProvisionEsimRequest;
use esim_upstream::sft::{AddonInfo, LifeCycle, SimInfo, SimQuery};
use esim_upstream::{ErrorKind, UpstreamError};
use rand::seq::SliceRandom;
use tonic::Code;

use crate::convert::AddonState;
use crate::entity::{addon, esim, sim_claim};
use crate::error::{ProvisioningError, Result};
use crate::service::Provisioning;
use crate::{ids, store};

/// SFT SIM status ids.
const PRE_ACTIVE: i64 = 12;
const ACTIVE: i64 = 1;
const SUSPENDED: i64 = 2;
const ATTACHED: i64 = 1;

/// Full scans of the `fetchSIM` pages before giving up: SIMs leave the Pre-Active list as
/// other provisions activate them, which shifts later pages, so one more scan finds a SIM a
/// shifted page hid.
const CLAIM_PASSES: usize = 3;

/// What happened to an activation whose call failed.
enum Activation {
    /// The endpoint is Active (the call did its work although its answer was lost).
    Applied,
    /// The endpoint is still Pre-Active: the SIM goes back to the pool.
    NotApplied,
    /// Nobody can tell (timeout, or the check failed): the SIM is quarantined.
    Unknown(String),
}

fn sim_status_name(id: Option<i64>) -> String {
    match id {
        Some(PRE_ACTIVE) => "Pre-Active (12)".into(),
        Some(ACTIVE) => "Active (1)".into(),
        Some(SUSPENDED) => "Suspended (2)".into(),
        Some(other) => format!("status {other}"),
        None => "of unknown status".into(),
    }
}

/// The error a failed provision answers with, first time and on every retry.
fn failure(code: Code, message: String) -> ProvisioningError {
    match code {
        Code::ResourceExhausted => ProvisioningError::Exhausted(message),
        Code::Unavailable => ProvisioningError::Unavailable { message },
        Code::Internal => ProvisioningError::Internal(message),
        _ => ProvisioningError::FailedPrecondition(message),
    }
}

impl Provisioning {
    /// `ProvisionEsim`.
    pub(crate) async fn provision(&self, req: ProvisionEsimRequest, rid: &str) -> Result<esim::Model> {
        ids::validate_request_id(&req.request_id, false)?;
        ids::validate_order("order", &req.order)?;
        let plan = req.sft_plan_id.trim();
        ids::validate_sft_plan_id("sft_plan_id", plan)?;
        let hash = ids::hash(&["ProvisionEsim", &req.order, plan]);
        let db = &self.inner.db;
        if let Some(row) = store::esim_by_request(db, &req.request_id).await? {
            return self.replay(row, &hash, rid).await;
        }
        let now = store::now();
        let row = esim::Model {
            id: ids::new_id(),
            order_name: req.order.clone(),
            provider: "SFT".into(),
            iccid: None,
            eid: None,
            sft_endpoint_id: None,
            upstream_order_code: None,
            fms_order_no: None,
            activation_code_enc: None,
            state: "selected".into(),
            state_reason: "looking for a Pre-Active, Attached SIM".into(),
            failure_code: None,
            step: "claiming".into(),
            sft_plan_id: Some(plan.to_owned()),
            request_id: req.request_id.clone(),
            request_hash: hash.clone(),
            lease_until: Some(now + self.lease()),
            create_time: now,
            update_time: now,
            activate_time: None,
            deliver_time: None,
            terminate_time: None,
        };
        if !store::insert_esim(db, row.clone()).await? {
            // Either the same request id raced us, or the order has a live eSIM.
            if let Some(existing) = store::esim_by_request(db, &req.request_id).await? {
                return self.replay(existing, &hash, rid).await;
            }
            let other = store::live_esim_of_order(db, &req.order).await?;
            return Err(ProvisioningError::AlreadyExists(match other {
                Some(o) => format!("{} already has an eSIM: {}", req.order, ids::esim_name(&o.id)),
                None => format!("{} already has an eSIM", req.order),
            }));
        }
        tracing::info!(esim = %row.id, order = %row.order_name, plan, "provisioning an SFT eSIM");
        self.run(row, rid).await
    }

    /// A retry with a known request id: the same answer, or the unfinished flow resumed.
    async fn replay(&self, row: esim::Model, hash: &str, rid: &str) -> Result<esim::Model> {
        if row.request_hash != hash {
            return Err(ProvisioningError::AlreadyExists(format!(
                "request_id {:?} was used for another request",
                row.request_id
            )));
        }
        if row.state == "failed" {
            let code = row.failure_code.map_or(Code::FailedPrecondition, Code::from);
            let db = &self.inner.db;
            let afresh = code == Code::Unavailable
                && store::claim_of(db, &row.id).await?.is_none()
                && store::live_esim_of_order(db, &row.order_name).await?.is_none();
            if afresh {
                return self.retry_after_outage(row, rid).await;
            }
            // Retrying cannot help: a refusal, a SIM quarantined for an operator, or the order
            // provisioned since under another request id. A caller that retries on UNAVAILABLE
            // (ordering's saga) hears that now, instead of UNAVAILABLE for ever.
            let code = if code == Code::Unavailable {
                Code::FailedPrecondition
            } else {
                code
            };
            return Err(failure(
                code,
                format!("{}: {}", ids::esim_name(&row.id), row.state_reason),
            ));
        }
        if row.step == "done" {
            return Ok(row);
        }
        if !store::take_lease(&self.inner.db, &row.id, store::now() + self.lease()).await? {
            return Err(ProvisioningError::Aborted(format!(
                "{} is being provisioned by another call; retry later",
                ids::esim_name(&row.id)
            )));
        }
        tracing::info!(esim = %row.id, step = %row.step, "resuming a provision");
        let row = store::esim(&self.inner.db, &row.id)
            .await?
            .ok_or_else(|| ProvisioningError::NotFound(ids::esim_name(&row.id)))?;
        self.run(row, rid).await
    }

    /// A retry of a provision that failed only because SFT was unavailable and holds no SIM
    /// (`fetchSIM` failed, or the activation failed with the SIM still Pre-Active and released):
    /// nothing of it is left upstream, so the retry is a fresh attempt under the same eSIM, and
    /// an outage that has passed does not fail the order for good.
    async fn retry_after_outage(&self, failed: esim::Model, rid: &str) -> Result<esim::Model> {
        let now = store::now();
        let row = esim::Model {
            state: "selected".into(),
            state_reason: format!(
                "looking for a Pre-Active, Attached SIM again (the last attempt: {})",
                failed.state_reason
            ),
            failure_code: None,
            step: "claiming".into(),
            iccid: None,
            sft_endpoint_id: None,
            lease_until: Some(now + self.lease()),
            update_time: now,
            ..failed
        };
        if !store::save_esim_if_state(&self.inner.db, &row, "failed").await? {
            return Err(ProvisioningError::Aborted(format!(
                "{} is being retried by another call; retry later",
                ids::esim_name(&row.id)
            )));
        }
        tracing::info!(esim = %row.id, "retrying a provision that found SFT unavailable");
        self.run(row, rid).await
    }

    fn lease(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.inner.settings.provision_lease)
            .unwrap_or(chrono::Duration::minutes(10))
    }

    /// Runs the remaining steps of a provision whose lease we hold. When a step's database write
    /// fails, the lease is given back, so the caller's retry resumes from the last recorded step
    /// (as after a crash) instead of waiting out the lease.
    async fn run(&self, row: esim::Model, rid: &str) -> Result<esim::Model> {
        let (id, lease) = (row.id.clone(), row.lease_until);
        let result = self.run_steps(row, rid).await;
        if let (Err(ProvisioningError::Database(err)), Some(lease)) = (&result, lease) {
            tracing::warn!(esim = %id, error = %err, "a provision step could not be recorded; giving its lease back");
            self.give_back_lease(id, lease);
        }
        result
    }

    /// Clears the lease `until` on eSIM `id` unless someone took it since, retrying in the
    /// background while the database is still away.
    fn give_back_lease(&self, id: String, until: chrono::DateTime<Utc>) {
        let inner = self.inner.clone();
        let backoff = ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_millis(200))
            .with_max_delay(std::time::Duration::from_secs(5))
            .with_max_times(20)
            .with_jitter();
        tokio::spawn(async move {
            let released = (|| store::release_lease(&inner.db, &id, until))
                .retry(backoff)
                .await;
            match released {
                Ok(_) => tracing::info!(esim = %id, "provision lease given back"),
                Err(err) => {
                    tracing::warn!(esim = %id, error = %err, "provision lease could not be given back; it runs out by itself")
                }
            }
        });
    }

    async fn run_steps(&self, mut row: esim::Model, rid: &str) -> Result<esim::Model> {
        loop {
            match row.step.as_str() {
                "claiming" => row = self.claim_step(row, rid).await?,
                "activating" => row = self.activate_step(row, rid).await?,
                "subscribing" => row = self.subscribe_step(row, rid).await?,
                _ => return Ok(row),
            }
        }
    }

    /// Ends a provision as FAILED with `reason`; returns the error the call answers with.
    async fn fail(&self, mut row: esim::Model, code: Code, reason: String) -> ProvisioningError {
        let now = store::now();
        row.state = "failed".into();
        row.state_reason = reason;
        row.failure_code = Some(code as i32);
        row.step = "done".into();
        row.lease_until = None;
        row.update_time = now;
        tracing::warn!(esim = %row.id, reason = %row.state_reason, "provision failed");
        if let Err(err) = store::save_esim(&self.inner.db, &row).await {
            return err;
        }
        failure(code, format!("{}: {}", ids::esim_name(&row.id), row.state_reason))
    }

    // -----------------------------------------------------------------------------------------
    // Step 1: claim a SIM.

    async fn claim_step(&self, row: esim::Model, rid: &str) -> Result<esim::Model> {
        let db = &self.inner.db;
        // A claim already made (the claim and the eSIM update commit together, so this is a
        // resumed flow that got past the claim).
        if let Some(claim) = store::claim_of(db, &row.id).await?
            && claim.status == "claimed"
            && row.sft_endpoint_id.as_deref() == Some(claim.sft_endpoint_id.as_str())
        {
            let mut row = row;
            row.step = "activating".into();
            return Ok(row);
        }
        let size = self.inner.settings.fetch_page_size;
        for pass in 0..CLAIM_PASSES {
            let mut page = 1u32;
            let mut saw_free = false;
            loop {
                let query = SimQuery {
                    page: Some(page),
                    ..SimQuery::available(size)
                };
                let sims = match self.inner.sft.fetch_sim(&query, rid).await {
                    Ok(sims) => sims,
                    Err(err) => {
                        let code = crate::error::upstream_code(&err);
                        return Err(self
                            .fail(row, code, format!("no SIM could be looked up: {err}"))
                            .await);
                    }
                };
                let listed = sims.len();
                let endpoints: Vec<String> = sims.iter().map(|s| s.end_point_id.clone()).collect();
                let taken: HashSet<String> =
                    store::claimed_among(db, &endpoints).await?.into_iter().collect();
                let mut free: Vec<SimInfo> = sims
                    .into_iter()
                    .filter(|s| !taken.contains(&s.end_point_id))
                    .filter(|s| s.sim_status_id.is_none_or(|v| v == PRE_ACTIVE))
                    .filter(|s| s.sim_attach_status_id.is_none_or(|v| v == ATTACHED))
                    .filter(|s| s.activation_code.is_some())
                    .collect();
                saw_free |= !free.is_empty();
                // Concurrent provisions read the same page: start each at a random SIM so they
                // rarely contend for the same row.
                free.shuffle(&mut rand::rng());
                for sim in free {
                    if let Some(claimed) = self.try_claim(&row, &sim).await? {
                        tracing::info!(esim = %claimed.id, endpoint = %sim.end_point_id, iccid = %sim.iccid, "SIM claimed");
                        return Ok(claimed);
                    }
                }
                if listed < size as usize {
                    break;
                }
                page += 1;
            }
            if !saw_free {
                break;
            }
            tracing::debug!(esim = %row.id, pass, "every free SIM was taken meanwhile; scanning again");
        }
        Err(self
            .fail(
                row,
                Code::ResourceExhausted,
                "no Pre-Active, Attached SFT SIM is available".into(),
            )
            .await)
    }

    /// Claims `sim` for `row` and records it on the eSIM in one transaction; `None` when
    /// another provision holds it.
    async fn try_claim(&self, row: &esim::Model, sim: &SimInfo) -> Result<Option<esim::Model>> {
        let Some(code) = &sim.activation_code else {
            return Ok(None);
        };
        let now = store::now();
        let mut next = row.clone();
        next.iccid = Some(sim.iccid.to_string());
        next.sft_endpoint_id = Some(sim.end_point_id.clone());
        next.activation_code_enc = Some(self.inner.cipher.encrypt(code, &row.id)?);
        next.step = "activating".into();
        next.state_reason = "SIM claimed; activating its endpoint".into();
        next.update_time = now;
        let tx = esim_runtime::db::begin_write(&self.inner.db).await?;
        let claimed = store::insert_claim(
            &tx,
            sim_claim::Model {
                sft_endpoint_id: sim.end_point_id.clone(),
                iccid: sim.iccid.to_string(),
                esim_id: row.id.clone(),
                status: "claimed".into(),
                reason: String::new(),
                create_time: now,
                update_time: now,
            },
        )
        .await?;
        if !claimed {
            tx.rollback().await?;
            return Ok(None);
        }
        store::save_esim(&tx, &next).await?;
        tx.commit().await?;
        Ok(Some(next))
    }

    // -----------------------------------------------------------------------------------------
    // Step 2: activate the endpoint.

    async fn activate_step(&self, mut row: esim::Model, rid: &str) -> Result<esim::Model> {
        let endpoint = row.sft_endpoint_id.clone().unwrap_or_default();
        let outcome = match self
            .inner
            .sft
            .change_life_cycle(&endpoint, LifeCycle::Active, "1", rid)
            .await
        {
            Ok(()) => Ok(()),
            Err(err) => match self.check_activation(&row, &err, rid).await {
                Activation::Applied => {
                    tracing::info!(esim = %row.id, %endpoint, error = %err, "activation answer lost, but the endpoint is Active");
                    Ok(())
                }
                other => Err((err, other)),
            },
        };
        let db = &self.inner.db;
        match outcome {
            Ok(()) => {
                let now = store::now();
                row.step = "subscribing".into();
                row.activate_time = Some(now);
                row.state_reason = "endpoint active; subscribing the add-on".into();
                row.update_time = now;
                store::save_esim(db, &row).await?;
                Ok(row)
            }
            Err((err, Activation::NotApplied)) => {
                store::release_claim(db, &endpoint, &row.id).await?;
                let reason = format!(
                    "activation of endpoint {endpoint} failed: {err}; the SIM is still Pre-Active and was released to the pool"
                );
                Err(self.fail(row, crate::error::upstream_code(&err), reason).await)
            }
            Err((err, Activation::Unknown(why))) => {
                let reason = format!(
                    "activation of endpoint {endpoint} failed: {err}; its state is unknown ({why}), so the SIM is quarantined"
                );
                store::set_claim_status(db, &endpoint, &row.id, "quarantined", &reason).await?;
                Err(self.fail(row, Code::Unavailable, reason).await)
            }
            Err((_, Activation::Applied)) => Err(ProvisioningError::Internal(
                "unreachable activation outcome".into(),
            )),
        }
    }

    /// After a failed lifecycle call: did it change the endpoint?
    async fn check_activation(&self, row: &esim::Model, err: &UpstreamError, rid: &str) -> Activation {
        if !err.outcome_unknown() {
            // SFT answered with a refusal (or the call was never sent): nothing changed.
            return Activation::NotApplied;
        }
        let still_running = matches!(err.kind, ErrorKind::Timeout(_) | ErrorKind::Transport(_))
            || matches!(err.kind, ErrorKind::HttpStatus { status: 504, .. });
        if still_running {
            // SFT may still be working on it (lifecycle changes can take minutes): whatever we
            // read now may change later.
            return Activation::Unknown("the call may still complete upstream".into());
        }
        match self.sim_status(row, rid).await {
            Ok(Some(ACTIVE)) => Activation::Applied,
            Ok(Some(PRE_ACTIVE)) => Activation::NotApplied,
            Ok(other) => Activation::Unknown(format!("the SIM is {}", sim_status_name(other))),
            Err(check) => Activation::Unknown(format!("the check failed: {check}")),
        }
    }

    /// The SIM's status id upstream (`fetchSIM` by ICCID).
    async fn sim_status(&self, row: &esim::Model, rid: &str) -> Result<Option<i64>, UpstreamError> {
        let Some(iccid) = row.iccid.as_deref().and_then(|i| i.parse::<Iccid>().ok()) else {
            return Ok(None);
        };
        let query = SimQuery {
            iccid: Some(iccid),
            ..SimQuery::default()
        };
        let sims = self.inner.sft.fetch_sim(&query, rid).await?;
        Ok(sims
            .into_iter()
            .find(|s| Some(s.end_point_id.as_str()) == row.sft_endpoint_id.as_deref())
            .and_then(|s| s.sim_status_id))
    }

    // -----------------------------------------------------------------------------------------
    // Step 3: subscribe the add-on plan.

    async fn subscribe_step(&self, mut row: esim::Model, rid: &str) -> Result<esim::Model> {
        let db = &self.inner.db;
        let endpoint = row.sft_endpoint_id.clone().unwrap_or_default();
        let plan = row.sft_plan_id.clone().unwrap_or_default();
        let addon_request = format!("provision:{}", row.request_id);
        let now = store::now();
        let fresh = store::insert_addon(
            db,
            addon::Model {
                id: ids::new_id(),
                esim_id: row.id.clone(),
                unique_id: None,
                sft_endpoint_id: endpoint.clone(),
                sft_plan_id: plan.clone(),
                order_name: Some(row.order_name.clone()),
                state: AddonState::Pending.as_str().into(),
                state_reason: String::new(),
                request_id: addon_request.clone(),
                request_hash: row.request_hash.clone(),
                purchase_time: None,
                validity_start_time: None,
                validity_end_time: None,
                create_time: now,
                update_time: now,
            },
        )
        .await?;
        // A resumed flow may have sent SubscribeAddon before it stopped: look before sending.
        let resumed = !fresh;
        let mut pending = store::addon_by_request(db, &addon_request)
            .await?
            .ok_or_else(|| ProvisioningError::Internal("the pending add-on vanished".into()))?;

        let settings = &self.inner.settings;
        let attempts = AtomicUsize::new(0);
        let sent = AtomicUsize::new(0);
        let backoff = ExponentialBuilder::default()
            .with_min_delay(settings.subscribe_min_delay)
            .with_max_delay(settings.subscribe_max_delay)
            .with_max_times(settings.subscribe_attempts.saturating_sub(1))
            .with_jitter();
        let result = (|| async {
            // A retry first looks for an add-on that an earlier attempt created although its
            // answer was lost (SubscribeAddon is not idempotent upstream).
            if (attempts.fetch_add(1, Ordering::SeqCst) > 0 || resumed)
                && let Some(found) = self.find_unrecorded_addon(&endpoint, &plan, rid).await?
            {
                return Ok(found);
            }
            sent.fetch_add(1, Ordering::SeqCst);
            self.inner.sft.subscribe_addon(&endpoint, &plan, rid).await
        })
        .retry(backoff)
        .when(UpstreamError::is_retryable)
        .notify(|err, delay| tracing::info!(esim = %row.id, error = %err, ?delay, "SubscribeAddon failed; retrying"))
        .await;

        let now = store::now();
        match result {
            Ok(info) => {
                apply_addon_info(&mut pending, &info, now);
                row.state = "activated".into();
                row.state_reason = String::new();
                row.step = "done".into();
                row.lease_until = None;
                row.update_time = now;
                let tx = esim_runtime::db::begin_write(db).await?;
                store::save_addon(&tx, &pending).await?;
                store::save_esim(&tx, &row).await?;
                store::set_claim_status(&tx, &endpoint, &row.id, "assigned", "").await?;
                tx.commit().await?;
                tracing::info!(esim = %row.id, %endpoint, addon = %pending.id, "SFT eSIM provisioned");
                Ok(row)
            }
            Err(err) => {
                let tries = sent.load(Ordering::SeqCst).max(1);
                let real = match self.sim_status(&row, rid).await {
                    Ok(status) => format!("endpoint {endpoint} is {}", sim_status_name(status)),
                    Err(check) => format!("the state of endpoint {endpoint} could not be read ({check})"),
                };
                let reason = format!(
                    "add-on subscription of plan {plan} failed after {tries} attempt(s): {err}; {real}, without an add-on; the SIM is quarantined"
                );
                pending.state = AddonState::Failed.as_str().into();
                pending.state_reason = format!("SubscribeAddon failed after {tries} attempt(s): {err}");
                pending.update_time = now;
                store::save_addon(db, &pending).await?;
                store::set_claim_status(db, &endpoint, &row.id, "quarantined", &reason).await?;
                Err(self.fail(row, crate::error::upstream_code(&err), reason).await)
            }
        }
    }

    /// An add-on of `plan` on `endpoint` that SFT has and we never recorded.
    pub(crate) async fn find_unrecorded_addon(
        &self,
        endpoint: &str,
        plan: &str,
        rid: &str,
    ) -> Result<Option<AddonInfo>, UpstreamError> {
        let addons = self.inner.sft.addon_details(endpoint, rid).await?;
        for info in addons {
            if info.plan_id.as_deref() != Some(plan) {
                continue;
            }
            match store::addon_unique_id_known(&self.inner.db, &info.unique_id).await {
                Ok(false) => return Ok(Some(info)),
                Ok(true) => {}
                Err(err) => {
                    // Without the database we cannot tell: let the caller treat it as not found.
                    tracing::warn!(error = %err, "cannot check recorded add-ons");
                    return Ok(None);
                }
            }
        }
        Ok(None)
    }
}

/// Records what SFT said about a subscribed add-on.
pub(crate) fn apply_addon_info(row: &mut addon::Model, info: &AddonInfo, now: chrono::DateTime<Utc>) {
    row.unique_id = Some(info.unique_id.clone());
    row.state = AddonState::from_sft_status(info.status.as_deref())
        .as_str()
        .into();
    row.state_reason = String::new();
    row.purchase_time = Some(now);
    // Microseconds, as the database keeps them.
    row.validity_start_time = info.valid_from.map(|t| t.with_timezone(&Utc).trunc_subsecs(6));
    row.validity_end_time = info.valid_to.map(|t| t.with_timezone(&Utc).trunc_subsecs(6));
    row.update_time = now;
}

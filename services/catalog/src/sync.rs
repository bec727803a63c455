//! The catalogue sync: fetch each provider's catalogue, then apply it in one transaction per
//! provider. A provider whose fetch fails keeps its last good catalogue; a product no longer
//! listed becomes unavailable (never deleted); an identical sync changes nothing.
//!
//! One sync at a time: concurrent requests in this replica join the running one, and across
//! replicas a lease row in `catalog_meta` decides who runs (the others wait for that run).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::Instrument;

use crate::cache::Cache;
use crate::entity::{meta, product, product_country, sync_run};
use crate::error::{CatalogError, Result};
use crate::source::{CatalogSource, Provider, SourceBatch, Sources};
use crate::store;

/// What started a run (stored form `STARTUP`, `SCHEDULE`, `MANUAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Service start.
    Startup,
    /// The periodic sync.
    Schedule,
    /// `SyncCatalog`.
    Manual,
}

impl Trigger {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Startup => "STARTUP",
            Self::Schedule => "SCHEDULE",
            Self::Manual => "MANUAL",
        }
    }
}

/// Outcomes, stored as text.
pub mod outcome {
    /// Still running.
    pub const RUNNING: &str = "RUNNING";
    /// Everything synced.
    pub const SUCCEEDED: &str = "SUCCEEDED";
    /// Some providers failed.
    pub const PARTIALLY_SUCCEEDED: &str = "PARTIALLY_SUCCEEDED";
    /// Nothing synced.
    pub const FAILED: &str = "FAILED";
}

/// One provider's result within a run (stored as JSON in the run row).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderResult {
    /// `MP`, `FMS`, `SFT`.
    pub provider: String,
    /// `SUCCEEDED` or `FAILED`.
    pub outcome: String,
    /// New products.
    pub added: u32,
    /// Changed products.
    pub updated: u32,
    /// Products seen again unchanged.
    pub unchanged: u32,
    /// Products now unavailable.
    pub unavailable: u32,
    /// Invalid upstream records.
    pub skipped: u32,
    /// Why it failed, or what was skipped.
    pub error_message: String,
}

/// Sync settings.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// How long a replica's claim on the sync lasts without finishing.
    pub lease: Duration,
    /// How often a waiter polls a run that another replica is running.
    pub poll: Duration,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(900),
            poll: Duration::from_millis(250),
        }
    }
}

/// A started (or joined) run.
#[derive(Debug)]
pub struct RunHandle {
    /// The run id.
    pub id: String,
    local: Option<watch::Receiver<Option<sync_run::Model>>>,
}

/// Runs syncs.
#[derive(Debug)]
pub struct Syncer {
    db: DatabaseConnection,
    sources: Sources,
    cache: Arc<Cache>,
    settings: SyncSettings,
    replica: String,
    running: tokio::sync::Mutex<Option<(String, watch::Receiver<Option<sync_run::Model>>)>>,
}

impl Syncer {
    /// A syncer over `sources`.
    pub fn new(db: DatabaseConnection, sources: Sources, cache: Arc<Cache>, settings: SyncSettings) -> Self {
        Self {
            db,
            sources,
            cache,
            settings,
            replica: uuid::Uuid::new_v4().to_string(),
            running: tokio::sync::Mutex::new(None),
        }
    }

    /// The providers this syncer has sources for.
    pub fn providers(&self) -> Vec<Provider> {
        self.sources.iter().map(|s| s.provider()).collect()
    }

    /// Starts a run, or joins the one running (here or on another replica).
    /// `providers` empty means all.
    pub async fn start(self: &Arc<Self>, trigger: Trigger, providers: &[Provider]) -> Result<RunHandle> {
        let mut running = self.running.lock().await;
        if let Some((id, rx)) = running.as_ref()
            && rx.borrow().is_none()
        {
            return Ok(RunHandle {
                id: id.clone(),
                local: Some(rx.clone()),
            });
        }
        let now = store::now();
        if !self.claim_lease(now).await? {
            drop(running);
            // Another replica is syncing: join its run.
            let runs = sync_run::Entity::find()
                .filter(sync_run::Column::Outcome.eq(outcome::RUNNING))
                .order_by_desc(sync_run::Column::Id)
                .all(&self.db)
                .await?;
            return match runs.into_iter().next() {
                Some(run) => Ok(RunHandle {
                    id: run.id,
                    local: None,
                }),
                None => Err(CatalogError::Aborted(
                    "another replica holds the sync lease; retry shortly".into(),
                )),
            };
        }
        // The lease was free, so a run still marked RUNNING was cut short (a crash).
        sync_run::Entity::update_many()
            .col_expr(sync_run::Column::Outcome, Expr::value(outcome::FAILED))
            .col_expr(sync_run::Column::EndTime, Expr::value(now))
            .filter(sync_run::Column::Outcome.eq(outcome::RUNNING))
            .exec(&self.db)
            .await?;

        let selected: Vec<Arc<dyn CatalogSource>> = self
            .sources
            .iter()
            .filter(|s| providers.is_empty() || providers.contains(&s.provider()))
            .cloned()
            .collect();
        let run = sync_run::Model {
            id: uuid::Uuid::now_v7().to_string(),
            trigger: trigger.as_str().to_owned(),
            outcome: outcome::RUNNING.to_owned(),
            provider_results: "[]".to_owned(),
            start_time: now,
            end_time: None,
        };
        if let Err(err) = sync_run::Entity::insert(run.clone().into_active_model().reset_all())
            .exec_without_returning(&self.db)
            .await
        {
            self.release_lease().await;
            return Err(err.into());
        }
        let (tx, rx) = watch::channel(None);
        *running = Some((run.id.clone(), rx.clone()));
        drop(running);

        let this = Arc::clone(self);
        let id = run.id.clone();
        tokio::spawn(async move {
            let finished = this.execute(run, selected).await;
            this.release_lease().await;
            let _ = tx.send(Some(finished));
        });
        Ok(RunHandle { id, local: Some(rx) })
    }

    /// Waits for a run to finish and returns it.
    pub async fn wait(&self, handle: RunHandle) -> Result<sync_run::Model> {
        if let Some(mut rx) = handle.local {
            loop {
                if let Some(run) = rx.borrow().clone() {
                    return Ok(run);
                }
                if rx.changed().await.is_err() {
                    break;
                }
            }
        }
        self.wait_for_row(&handle.id).await
    }

    /// Waits until the stored run `id` is no longer RUNNING.
    pub async fn wait_for_row(&self, id: &str) -> Result<sync_run::Model> {
        loop {
            let rows = sync_run::Entity::find()
                .filter(sync_run::Column::Id.eq(id))
                .all(&self.db)
                .await?;
            let run = rows
                .into_iter()
                .next()
                .ok_or_else(|| CatalogError::NotFound(format!("syncRuns/{id}")))?;
            if run.outcome != outcome::RUNNING {
                return Ok(run);
            }
            tokio::time::sleep(self.settings.poll).await;
        }
    }

    /// Runs (or joins) a sync and waits for it.
    pub async fn sync(self: &Arc<Self>, trigger: Trigger, providers: &[Provider]) -> Result<sync_run::Model> {
        let handle = self.start(trigger, providers).await?;
        self.wait(handle).await
    }

    async fn claim_lease(&self, now: DateTime<Utc>) -> Result<bool> {
        let until =
            now + chrono::Duration::from_std(self.settings.lease).unwrap_or(chrono::Duration::minutes(15));
        let result = meta::Entity::update_many()
            .col_expr(meta::Column::Holder, Expr::value(self.replica.clone()))
            .col_expr(meta::Column::ExpiresAt, Expr::value(until))
            .filter(meta::Column::Name.eq(store::LEASE_ROW))
            .filter(
                Condition::any()
                    .add(meta::Column::Holder.is_null())
                    .add(meta::Column::ExpiresAt.lt(now))
                    .add(meta::Column::Holder.eq(self.replica.clone())),
            )
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    async fn release_lease(&self) {
        let released = meta::Entity::update_many()
            .col_expr(meta::Column::Holder, Expr::value(Option::<String>::None))
            .col_expr(
                meta::Column::ExpiresAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(meta::Column::Name.eq(store::LEASE_ROW))
            .filter(meta::Column::Holder.eq(self.replica.clone()))
            .exec(&self.db)
            .await;
        if let Err(err) = released {
            // It expires by itself.
            tracing::warn!(error = %err, "could not release the sync lease");
        }
    }

    /// Runs the sync itself and records the result; never fails (a failure is the outcome).
    async fn execute(
        &self,
        mut run: sync_run::Model,
        sources: Vec<Arc<dyn CatalogSource>>,
    ) -> sync_run::Model {
        let request_id = format!("catalog-sync-{}", run.id);
        let mut results = Vec::new();
        for source in sources {
            let provider = source.provider();
            let span = tracing::info_span!("catalog_sync", provider = provider.as_str(), run = %run.id);
            let fetched = source.fetch(&request_id).instrument(span).await;
            let result = match fetched {
                Ok(batch) => match self.apply(provider, batch).await {
                    Ok(result) => result,
                    Err(err) => failed(provider, format!("could not store the catalogue: {err}")),
                },
                Err(err) => failed(provider, err.0),
            };
            tracing::info!(
                provider = provider.as_str(),
                outcome = %result.outcome,
                added = result.added,
                updated = result.updated,
                unchanged = result.unchanged,
                unavailable = result.unavailable,
                skipped = result.skipped,
                error = %result.error_message,
                "catalog sync of one provider done"
            );
            results.push(result);
        }
        let succeeded = results.iter().filter(|r| r.outcome == outcome::SUCCEEDED).count();
        run.outcome = if succeeded == results.len() {
            outcome::SUCCEEDED
        } else if succeeded == 0 {
            outcome::FAILED
        } else {
            outcome::PARTIALLY_SUCCEEDED
        }
        .to_owned();
        run.provider_results = serde_json::to_string(&results).unwrap_or_else(|_| "[]".into());
        run.end_time = Some(store::now());
        let stored = sync_run::Entity::update_many()
            .set(run.clone().into_active_model().reset_all())
            .filter(sync_run::Column::Id.eq(run.id.clone()))
            .exec(&self.db)
            .await;
        if let Err(err) = stored {
            tracing::error!(error = %err, run = %run.id, "could not record the sync run");
        }
        if let Err(err) = esim_runtime::db::checkpoint(&self.db).await {
            tracing::warn!(error = %err, "WAL checkpoint failed");
        }
        run
    }

    /// Applies one provider's fetched catalogue in one transaction.
    async fn apply(&self, provider: Provider, batch: SourceBatch) -> Result<ProviderResult> {
        let now = store::now();
        let mut result = ProviderResult {
            provider: provider.as_str().to_owned(),
            outcome: outcome::SUCCEEDED.to_owned(),
            ..ProviderResult::default()
        };
        let mut notes = batch.skipped;
        let tx = esim_runtime::db::begin_write(&self.db).await?;
        let existing: HashMap<String, product::Model> = product::Entity::find()
            .filter(product::Column::Provider.eq(provider.as_str()))
            .all(&tx)
            .await?
            .into_iter()
            .map(|p| (p.id.clone(), p))
            .collect();
        let (_, rule) = store::load_rule(&tx, provider).await?;

        let mut seen = HashSet::new();
        let mut inserts = Vec::new();
        let mut updates = Vec::new();
        let mut coverage_changed = Vec::new();
        let mut no_fixed: BTreeSet<String> = BTreeSet::new();
        for sp in &batch.products {
            let (mut row, fixed_missed) = store::product_row(sp, &rule, now);
            if !seen.insert(row.id.clone()) {
                notes.push(format!("{}: listed twice upstream, first kept", row.id));
                continue;
            }
            if fixed_missed {
                no_fixed.insert(row.currency.clone());
            }
            match existing.get(&row.id) {
                None => inserts.push(row),
                Some(old) if store::same_content(old, &row) => result.unchanged += 1,
                Some(old) => {
                    row.create_time = old.create_time;
                    if old.coverage != row.coverage {
                        coverage_changed.push(row.id.clone());
                    }
                    updates.push(row);
                }
            }
        }
        result.skipped = u32::try_from(notes.len()).unwrap_or(u32::MAX);
        result.added = u32::try_from(inserts.len()).unwrap_or(u32::MAX);
        result.updated = u32::try_from(updates.len()).unwrap_or(u32::MAX);

        let vanished: Vec<String> = existing
            .values()
            .filter(|p| p.available && !seen.contains(&p.id))
            .map(|p| p.id.clone())
            .collect();
        result.unavailable = u32::try_from(vanished.len()).unwrap_or(u32::MAX);

        let mut country_rows = Vec::new();
        for row in inserts
            .iter()
            .chain(updates.iter().filter(|r| coverage_changed.contains(&r.id)))
        {
            for code in row.coverage.split(',').filter(|c| !c.is_empty()) {
                country_rows.push(product_country::Model {
                    product_id: row.id.clone(),
                    country_code: code.to_owned(),
                });
            }
        }
        // Chunks keep each statement well under SQLite's bound-parameter limit.
        for chunk in inserts.chunks(200) {
            product::Entity::insert_many(
                chunk
                    .iter()
                    .map(|r| r.clone().into_active_model().reset_all())
                    .collect::<Vec<_>>(),
            )
            .exec_without_returning(&tx)
            .await?;
        }
        for row in updates {
            store::overwrite_product(&tx, row).await?;
        }
        if !coverage_changed.is_empty() {
            product_country::Entity::delete_many()
                .filter(product_country::Column::ProductId.is_in(coverage_changed))
                .exec(&tx)
                .await?;
        }
        for chunk in country_rows.chunks(500) {
            product_country::Entity::insert_many(
                chunk
                    .iter()
                    .map(|r| r.clone().into_active_model().reset_all())
                    .collect::<Vec<_>>(),
            )
            .exec_without_returning(&tx)
            .await?;
        }
        for chunk in vanished.chunks(500) {
            product::Entity::update_many()
                .col_expr(product::Column::Available, Expr::value(false))
                .col_expr(product::Column::UpdateTime, Expr::value(now))
                .filter(product::Column::Id.is_in(chunk.iter().cloned()))
                .exec(&tx)
                .await?;
        }
        // Last-seen is bookkeeping, not a change of the product: update_time stays.
        product::Entity::update_many()
            .col_expr(product::Column::LastSeenTime, Expr::value(now))
            .filter(product::Column::Provider.eq(provider.as_str()))
            .filter(product::Column::Available.eq(true))
            .exec(&tx)
            .await?;
        let changed = result.added + result.updated + result.unavailable > 0;
        let version = if changed {
            Some(store::bump_version(&tx).await?)
        } else {
            None
        };
        tx.commit().await?;
        if let Some(version) = version {
            self.cache.written(version);
        }

        if !no_fixed.is_empty() {
            notes.push(format!(
                "the fixed markup was left out for prices in {} (the rule's currency differs)",
                no_fixed.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        result.error_message = summarize(&notes);
        Ok(result)
    }
}

fn failed(provider: Provider, message: String) -> ProviderResult {
    ProviderResult {
        provider: provider.as_str().to_owned(),
        outcome: outcome::FAILED.to_owned(),
        error_message: message,
        ..ProviderResult::default()
    }
}

/// The first few notes and how many more, so a run row stays small.
fn summarize(notes: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = notes.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; ");
    if notes.len() > SHOWN {
        text.push_str(&format!("; and {} more", notes.len() - SHOWN));
    }
    text
}

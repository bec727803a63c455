//! `esim.catalog.v1.CatalogService`: validation, reads through the cache, and the admin
//! writes. Every handler returns the crate's error, mapped once to `tonic::Status`.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Utc;
use esim_domain::{CountryCode, Mcc};
use esim_proto::catalog::v1 as pb;
use esim_proto::catalog::v1::catalog_service_server::CatalogService;
use esim_proto::catalog::v1::list_products_request::Country as CountryFilter;
use prost::Message;
use sea_orm::sea_query::{Condition, Expr, ExprTrait, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, SqlErr,
};
use tonic::{Request, Response, Status};

use crate::cache::{Cache, Cached};
use esim_runtime::api::{page_size, page_token, resource_id};

use crate::convert::{self, Cursor};
use crate::entity::{idempotency, pricing_rule, product, product_country, sft_plan, sync_run};
use crate::error::{CatalogError, Result};
use crate::mcc;
use crate::source::Provider;
use crate::store;
use crate::sync::{Syncer, Trigger};

/// How long a request id is remembered (AIP-155).
const IDEMPOTENCY_TTL: chrono::Duration = chrono::Duration::hours(24);

/// The service implementation. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CatalogApi {
    db: DatabaseConnection,
    cache: Arc<Cache>,
    syncer: Arc<Syncer>,
}

/// The sort orders of `ListProducts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Price { desc: bool },
    Data { desc: bool },
}

impl Order {
    fn parse(s: &str) -> Result<Self> {
        let words: Vec<&str> = s.split_whitespace().collect();
        match words.as_slice() {
            [] | ["retail_price"] => Ok(Self::Price { desc: false }),
            ["retail_price", "desc"] => Ok(Self::Price { desc: true }),
            ["data_bytes"] => Ok(Self::Data { desc: false }),
            ["data_bytes", "desc"] => Ok(Self::Data { desc: true }),
            _ => Err(CatalogError::invalid(
                "order_by",
                "must be one of `retail_price`, `retail_price desc`, `data_bytes`, `data_bytes desc`",
            )),
        }
    }

    fn column(self) -> product::Column {
        match self {
            Self::Price { .. } => product::Column::RetailNanos,
            Self::Data { .. } => product::Column::DataSort,
        }
    }

    fn desc(self) -> bool {
        matches!(self, Self::Price { desc: true } | Self::Data { desc: true })
    }

    fn key(self, row: &product::Model) -> i64 {
        match self {
            Self::Price { .. } => row.retail_nanos,
            Self::Data { .. } => row.data_sort,
        }
    }
}

/// `request_id` (AIP-155): empty, or 1-64 characters of `[A-Za-z0-9._~:-]`.
fn check_request_id(id: &str) -> Result<()> {
    let ok = id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".~:_-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CatalogError::invalid(
            "request_id",
            "must be 1-64 characters of [A-Za-z0-9._~:-]",
        ))
    }
}

fn provider_filter(value: i32, field: &str) -> Result<Option<Provider>> {
    if value == 0 {
        return Ok(None);
    }
    Provider::from_proto(value)
        .map(Some)
        .ok_or_else(|| CatalogError::invalid(field, format!("unknown provider {value}")))
}

fn map_unique(err: sea_orm::DbErr, what: String) -> CatalogError {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => CatalogError::AlreadyExists(what),
        _ => CatalogError::Database(err),
    }
}

/// A validated SFT plan.
#[derive(Debug)]
struct PlanValues {
    display_name: String,
    data_bytes: i64,
    unlimited: bool,
    validity_days: i32,
    coverage: BTreeSet<CountryCode>,
    wholesale: esim_domain::Money,
}

fn validate_plan(plan: &pb::SftPlan) -> Result<PlanValues> {
    let name = plan.display_name.trim();
    esim_runtime::api::text(
        name,
        "sft_plan.display_name",
        esim_domain::TextRule::required(200),
    )?;
    if plan.unlimited && plan.data_bytes != 0 {
        return Err(CatalogError::invalid(
            "sft_plan.data_bytes",
            "must be 0 when the plan is unlimited",
        ));
    }
    if !plan.unlimited && plan.data_bytes <= 0 {
        return Err(CatalogError::invalid(
            "sft_plan.data_bytes",
            "must be positive unless the plan is unlimited",
        ));
    }
    if !(1..=3650).contains(&plan.validity_days) {
        return Err(CatalogError::invalid(
            "sft_plan.validity_days",
            "must be between 1 and 3650",
        ));
    }
    if plan.coverage_country_codes.is_empty() {
        return Err(CatalogError::invalid(
            "sft_plan.coverage_country_codes",
            "at least one country is required",
        ));
    }
    let mut coverage = BTreeSet::new();
    for code in &plan.coverage_country_codes {
        let parsed: CountryCode = code.parse().map_err(|_| {
            CatalogError::invalid(
                "sft_plan.coverage_country_codes",
                format!("{code:?} is not an ISO 3166-1 alpha-2 code"),
            )
        })?;
        coverage.insert(parsed);
    }
    let wholesale = plan
        .wholesale_price
        .as_ref()
        .ok_or_else(|| CatalogError::invalid("sft_plan.wholesale_price", "is required"))?;
    let wholesale = convert::parse_money(wholesale, "sft_plan.wholesale_price")?;
    Ok(PlanValues {
        display_name: name.to_owned(),
        data_bytes: plan.data_bytes,
        unlimited: plan.unlimited,
        validity_days: plan.validity_days,
        coverage,
        wholesale,
    })
}

fn plan_row(plan_id: &str, v: &PlanValues, revision: i64, created: chrono::DateTime<Utc>) -> sft_plan::Model {
    sft_plan::Model {
        plan_id: plan_id.to_owned(),
        display_name: v.display_name.clone(),
        data_bytes: v.data_bytes,
        unlimited: v.unlimited,
        validity_days: v.validity_days,
        coverage: v
            .coverage
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(","),
        currency: v.wholesale.currency().to_string(),
        wholesale_amount: store::decimal_text(v.wholesale.amount()),
        revision,
        create_time: created,
        update_time: store::now(),
    }
}

/// The mask paths of a standard update; empty or `*` means all of `all`.
fn mask_paths(mask: Option<&prost_types::FieldMask>, all: &[&str]) -> Result<Vec<String>> {
    let paths: Vec<String> = mask.map(|m| m.paths.clone()).unwrap_or_default();
    if paths.is_empty() || paths.iter().any(|p| p == "*") {
        return Ok(all.iter().map(|s| (*s).to_owned()).collect());
    }
    for p in &paths {
        if !all.contains(&p.as_str()) {
            return Err(CatalogError::invalid(
                "update_mask",
                format!("{p:?} cannot be updated; allowed: {}", all.join(", ")),
            ));
        }
    }
    Ok(paths)
}

impl CatalogApi {
    /// The API over `db`, reading through `cache`, syncing with `syncer`.
    pub fn new(db: DatabaseConnection, cache: Arc<Cache>, syncer: Arc<Syncer>) -> Self {
        Self { db, cache, syncer }
    }

    // ----- idempotency (AIP-155) ------------------------------------------------------------

    async fn recall(&self, method: &str, request_id: &str, hash: &str) -> Result<Option<Vec<u8>>> {
        check_request_id(request_id)?;
        if request_id.is_empty() {
            return Ok(None);
        }
        let rows = idempotency::Entity::find()
            .filter(idempotency::Column::Key.eq(format!("{method}:{request_id}")))
            .filter(idempotency::Column::CreateTime.gt(store::now() - IDEMPOTENCY_TTL))
            .all(&self.db)
            .await?;
        match rows.into_iter().next() {
            None => Ok(None),
            Some(row) if row.request_hash == hash => Ok(Some(row.response)),
            Some(_) => Err(CatalogError::AlreadyExists(format!(
                "request_id {request_id:?} was already used for a different {method} request"
            ))),
        }
    }

    async fn remember(&self, method: &str, request_id: &str, hash: &str, response: Vec<u8>) -> Result<()> {
        if request_id.is_empty() {
            return Ok(());
        }
        let now = store::now();
        let key = format!("{method}:{request_id}");
        // Expired keys go first, so the key can be reused after its 24 hours.
        idempotency::Entity::delete_many()
            .filter(idempotency::Column::CreateTime.lte(now - IDEMPOTENCY_TTL))
            .exec(&self.db)
            .await?;
        let row = idempotency::Model {
            key,
            request_hash: hash.to_owned(),
            response,
            create_time: now,
        };
        idempotency::Entity::insert(row.into_active_model().reset_all())
            .on_conflict_do_nothing()
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }

    // ----- reads ------------------------------------------------------------------------------

    async fn products(&self, req: pb::ListProductsRequest) -> Result<pb::ListProductsResponse> {
        let size = page_size(req.page_size, 50, 500)?;
        let countries: Option<Vec<String>> = match &req.country {
            Some(CountryFilter::CountryCode(code)) => {
                let code: CountryCode = code.parse().map_err(|_| {
                    CatalogError::invalid(
                        "country_code",
                        format!("{code:?} is not an ISO 3166-1 alpha-2 code"),
                    )
                })?;
                Some(vec![code.to_string()])
            }
            Some(CountryFilter::Mcc(text)) => {
                let mcc: Mcc = text
                    .parse()
                    .ok()
                    .filter(|_| text.len() == 3)
                    .ok_or_else(|| CatalogError::invalid("mcc", "must be exactly three digits"))?;
                let codes = mcc::table().countries(mcc);
                if codes.is_empty() {
                    return Err(CatalogError::invalid("mcc", format!("{mcc} is not a known MCC")));
                }
                Some(codes.iter().map(ToString::to_string).collect())
            }
            None => None,
        };
        let provider = provider_filter(req.provider, "provider")?;
        if req.min_data_bytes < 0 {
            return Err(CatalogError::invalid("min_data_bytes", "must not be negative"));
        }
        let max_price = req
            .max_retail_price
            .as_ref()
            .map(|m| convert::parse_money(m, "max_retail_price"))
            .transpose()?;
        let order = Order::parse(&req.order_by)?;

        let canonical = format!(
            "products|c={countries:?}|p={provider:?}|d={}|m={:?}|u={}|o={order:?}",
            req.min_data_bytes,
            max_price.map(|m| (store::nanos(m.amount()), m.currency().to_string())),
            req.show_unavailable,
        );
        let fp = page_token::fingerprint(&canonical);
        let cursor = page_token::decode::<Cursor>(&req.page_token, &fp)?;
        let cache_key = format!("{canonical}|{size}|{}", req.page_token);
        if let Some(Cached::Products(hit)) = self.cache.get(&cache_key) {
            return Ok((*hit).clone());
        }
        let generation = self.cache.generation();

        let mut query = product::Entity::find();
        if !req.show_unavailable {
            query = query.filter(product::Column::Available.eq(true));
        }
        if let Some(p) = provider {
            query = query.filter(product::Column::Provider.eq(p.as_str()));
        }
        if let Some(codes) = countries {
            query = query.filter(
                product::Column::Id.in_subquery(
                    Query::select()
                        .column(product_country::Column::ProductId)
                        .from(product_country::Entity)
                        .and_where(product_country::Column::CountryCode.is_in(codes))
                        .to_owned(),
                ),
            );
        }
        if req.min_data_bytes > 0 {
            query = query.filter(product::Column::DataSort.gte(req.min_data_bytes));
        }
        if let Some(max) = max_price {
            query = query
                .filter(product::Column::Currency.eq(max.currency().to_string()))
                .filter(product::Column::RetailNanos.lte(store::nanos(max.amount())));
        }
        let col = order.column();
        if let Some(cursor) = &cursor {
            let k = cursor
                .k
                .ok_or_else(|| CatalogError::invalid("page_token", "malformed page token"))?;
            let past = if order.desc() { col.lt(k) } else { col.gt(k) };
            query = query.filter(
                Condition::any().add(past).add(
                    Condition::all()
                        .add(col.eq(k))
                        .add(product::Column::Id.gt(cursor.id.clone())),
                ),
            );
        }
        query = if order.desc() {
            query.order_by_desc(col)
        } else {
            query.order_by_asc(col)
        };
        let rows = query
            .order_by_asc(product::Column::Id)
            .limit(size + 1)
            .all(&self.db)
            .await?;
        let more = rows.len() as u64 > size;
        let page = &rows[..rows.len().min(size as usize)];
        let next_page_token = match page.last() {
            Some(last) if more => page_token::encode(
                &fp,
                &Cursor {
                    k: Some(order.key(last)),
                    id: last.id.clone(),
                },
            ),
            _ => String::new(),
        };
        let response = pb::ListProductsResponse {
            products: page.iter().map(convert::product).collect::<Result<_>>()?,
            next_page_token,
        };
        self.cache.put(
            cache_key,
            generation,
            Cached::Products(Arc::new(response.clone())),
        );
        Ok(response)
    }

    async fn countries(&self, req: pb::ListCountriesRequest) -> Result<pb::ListCountriesResponse> {
        let size = page_size(req.page_size, 250, 500)?;
        let provider = provider_filter(req.provider, "provider")?;
        let canonical = format!("countries|p={provider:?}");
        let fp = page_token::fingerprint(&canonical);
        let cursor = page_token::decode::<Cursor>(&req.page_token, &fp)?;
        let cache_key = format!("{canonical}|{size}|{}", req.page_token);
        if let Some(Cached::Countries(hit)) = self.cache.get(&cache_key) {
            return Ok((*hit).clone());
        }
        let generation = self.cache.generation();

        let mut available = Query::select()
            .column(product::Column::Id)
            .from(product::Entity)
            .and_where(product::Column::Available.eq(true))
            .to_owned();
        if let Some(p) = provider {
            available.and_where(product::Column::Provider.eq(p.as_str()));
        }
        let mut query = product_country::Entity::find()
            .select_only()
            .column(product_country::Column::CountryCode)
            .column_as(Expr::col(product_country::Column::ProductId).count(), "n")
            .filter(product_country::Column::ProductId.in_subquery(available));
        if let Some(cursor) = &cursor {
            query = query.filter(product_country::Column::CountryCode.gt(cursor.id.clone()));
        }
        let rows: Vec<(String, i64)> = query
            .group_by(product_country::Column::CountryCode)
            .order_by_asc(product_country::Column::CountryCode)
            .limit(size + 1)
            .into_tuple()
            .all(&self.db)
            .await?;
        let more = rows.len() as u64 > size;
        let page = &rows[..rows.len().min(size as usize)];
        let table = mcc::table();
        let countries = page
            .iter()
            .map(|(code, n)| {
                let parsed: Option<CountryCode> = code.parse().ok();
                pb::Country {
                    name: format!("countries/{code}"),
                    country_code: code.clone(),
                    display_name: parsed.map(|c| table.country_name(c)).unwrap_or_default(),
                    mccs: parsed
                        .map(|c| table.mccs(c).iter().map(ToString::to_string).collect())
                        .unwrap_or_default(),
                    product_count: i32::try_from(*n).unwrap_or(i32::MAX),
                }
            })
            .collect();
        let next_page_token = match page.last() {
            Some((code, _)) if more => page_token::encode(
                &fp,
                &Cursor {
                    k: None,
                    id: code.clone(),
                },
            ),
            _ => String::new(),
        };
        let response = pb::ListCountriesResponse {
            countries,
            next_page_token,
        };
        self.cache.put(
            cache_key,
            generation,
            Cached::Countries(Arc::new(response.clone())),
        );
        Ok(response)
    }

    async fn product(&self, req: pb::GetProductRequest) -> Result<pb::Product> {
        let id = resource_id(&req.name, "products", "name", convert::is_lower_id)?;
        let key = format!("product|{id}");
        let found = match self.cache.get(&key) {
            Some(Cached::Product(hit)) => hit,
            _ => {
                let generation = self.cache.generation();
                let rows = product::Entity::find()
                    .filter(product::Column::Id.eq(id))
                    .all(&self.db)
                    .await?;
                let found = rows.first().map(convert::product).transpose()?.map(Arc::new);
                self.cache.put(key, generation, Cached::Product(found.clone()));
                found
            }
        };
        found
            .map(|p| (*p).clone())
            .ok_or_else(|| CatalogError::NotFound(req.name.clone()))
    }

    // ----- sync -------------------------------------------------------------------------------

    async fn sync_now(&self, req: pb::SyncCatalogRequest) -> Result<pb::SyncRun> {
        let mut providers = Vec::new();
        for value in &req.providers {
            let p = provider_filter(*value, "providers")?.ok_or_else(|| {
                CatalogError::invalid("providers", "PROVIDER_UNSPECIFIED is not a provider")
            })?;
            if !self.syncer.providers().contains(&p) {
                return Err(CatalogError::invalid(
                    "providers",
                    format!("{p} is not enabled in this catalog (CATALOG_PROVIDERS)"),
                ));
            }
            if !providers.contains(&p) {
                providers.push(p);
            }
        }
        let hash = request_hash(&pb::SyncCatalogRequest {
            request_id: String::new(),
            ..req.clone()
        });
        if let Some(run_id) = self.recall("SyncCatalog", &req.request_id, &hash).await? {
            let run_id = String::from_utf8(run_id).map_err(|e| CatalogError::Internal(e.to_string()))?;
            let run = self.syncer.wait_for_row(&run_id).await?;
            return Ok(convert::sync_run(&run));
        }
        let handle = self.syncer.start(Trigger::Manual, &providers).await?;
        self.remember(
            "SyncCatalog",
            &req.request_id,
            &hash,
            handle.id.clone().into_bytes(),
        )
        .await?;
        let run = self.syncer.wait(handle).await?;
        Ok(convert::sync_run(&run))
    }

    async fn run(&self, req: pb::GetSyncRunRequest) -> Result<pb::SyncRun> {
        let id = resource_id(&req.name, "syncRuns", "name", convert::is_lower_id)?;
        let rows = sync_run::Entity::find()
            .filter(sync_run::Column::Id.eq(id))
            .all(&self.db)
            .await?;
        rows.first()
            .map(convert::sync_run)
            .ok_or_else(|| CatalogError::NotFound(req.name.clone()))
    }

    async fn runs(&self, req: pb::ListSyncRunsRequest) -> Result<pb::ListSyncRunsResponse> {
        let size = page_size(req.page_size, 20, 100)?;
        let fp = page_token::fingerprint("syncRuns");
        let cursor = page_token::decode::<Cursor>(&req.page_token, &fp)?;
        let mut query = sync_run::Entity::find();
        if let Some(c) = &cursor {
            query = query.filter(sync_run::Column::Id.lt(c.id.clone()));
        }
        let rows = query
            .order_by_desc(sync_run::Column::Id)
            .limit(size + 1)
            .all(&self.db)
            .await?;
        let more = rows.len() as u64 > size;
        let page = &rows[..rows.len().min(size as usize)];
        Ok(pb::ListSyncRunsResponse {
            sync_runs: page.iter().map(convert::sync_run).collect(),
            next_page_token: match page.last() {
                Some(last) if more => page_token::encode(
                    &fp,
                    &Cursor {
                        k: None,
                        id: last.id.clone(),
                    },
                ),
                _ => String::new(),
            },
        })
    }

    // ----- SFT plans --------------------------------------------------------------------------

    async fn find_plan(&self, plan_id: &str) -> Result<Option<sft_plan::Model>> {
        Ok(sft_plan::Entity::find()
            .filter(sft_plan::Column::PlanId.eq(plan_id))
            .all(&self.db)
            .await?
            .into_iter()
            .next())
    }

    async fn create_plan(&self, req: pb::CreateSftPlanRequest) -> Result<pb::SftPlan> {
        let hash = request_hash(&pb::CreateSftPlanRequest {
            request_id: String::new(),
            ..req.clone()
        });
        if let Some(bytes) = self.recall("CreateSftPlan", &req.request_id, &hash).await? {
            return decode(&bytes);
        }
        if !convert::is_plan_id(&req.sft_plan_id) {
            return Err(CatalogError::invalid(
                "sft_plan_id",
                "must be 1-63 characters of [A-Za-z0-9_-]",
            ));
        }
        let plan = req
            .sft_plan
            .as_ref()
            .ok_or_else(|| CatalogError::invalid("sft_plan", "is required"))?;
        let values = validate_plan(plan)?;
        let created = insert_plan(&self.db, &req.sft_plan_id, &values).await?;
        let answer = convert::sft_plan(&created)?;
        self.remember("CreateSftPlan", &req.request_id, &hash, answer.encode_to_vec())
            .await?;
        Ok(answer)
    }

    async fn get_plan(&self, req: pb::GetSftPlanRequest) -> Result<pb::SftPlan> {
        let id = resource_id(&req.name, "sftPlans", "name", convert::is_plan_id)?;
        let row = self
            .find_plan(id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(req.name.clone()))?;
        convert::sft_plan(&row)
    }

    async fn list_plans(&self, req: pb::ListSftPlansRequest) -> Result<pb::ListSftPlansResponse> {
        let size = page_size(req.page_size, 100, 500)?;
        let fp = page_token::fingerprint("sftPlans");
        let cursor = page_token::decode::<Cursor>(&req.page_token, &fp)?;
        let mut query = sft_plan::Entity::find();
        if let Some(c) = &cursor {
            query = query.filter(sft_plan::Column::PlanId.gt(c.id.clone()));
        }
        let rows = query
            .order_by_asc(sft_plan::Column::PlanId)
            .limit(size + 1)
            .all(&self.db)
            .await?;
        let more = rows.len() as u64 > size;
        let page = &rows[..rows.len().min(size as usize)];
        Ok(pb::ListSftPlansResponse {
            sft_plans: page.iter().map(convert::sft_plan).collect::<Result<_>>()?,
            next_page_token: match page.last() {
                Some(last) if more => page_token::encode(
                    &fp,
                    &Cursor {
                        k: None,
                        id: last.plan_id.clone(),
                    },
                ),
                _ => String::new(),
            },
        })
    }

    async fn update_plan(&self, req: pb::UpdateSftPlanRequest) -> Result<pb::SftPlan> {
        let hash = request_hash(&pb::UpdateSftPlanRequest {
            request_id: String::new(),
            ..req.clone()
        });
        if let Some(bytes) = self.recall("UpdateSftPlan", &req.request_id, &hash).await? {
            return decode(&bytes);
        }
        let plan = req
            .sft_plan
            .as_ref()
            .ok_or_else(|| CatalogError::invalid("sft_plan", "is required"))?;
        let id = resource_id(&plan.name, "sftPlans", "sft_plan.name", convert::is_plan_id)?;
        const FIELDS: [&str; 6] = [
            "display_name",
            "data_bytes",
            "unlimited",
            "validity_days",
            "coverage_country_codes",
            "wholesale_price",
        ];
        let paths = mask_paths(req.update_mask.as_ref(), &FIELDS)?;
        let tx = esim_runtime::db::begin_write(&self.db).await?;
        let current = sft_plan::Entity::find()
            .filter(sft_plan::Column::PlanId.eq(id))
            .all(&tx)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| CatalogError::NotFound(plan.name.clone()))?;
        if !plan.etag.is_empty() && plan.etag != convert::etag(&current) {
            return Err(CatalogError::Aborted(format!(
                "{} changed since the etag was read",
                plan.name
            )));
        }
        let mut merged = convert::sft_plan(&current)?;
        for path in &paths {
            match path.as_str() {
                "display_name" => merged.display_name = plan.display_name.clone(),
                "data_bytes" => merged.data_bytes = plan.data_bytes,
                "unlimited" => merged.unlimited = plan.unlimited,
                "validity_days" => merged.validity_days = plan.validity_days,
                "coverage_country_codes" => {
                    merged.coverage_country_codes = plan.coverage_country_codes.clone();
                }
                "wholesale_price" => merged.wholesale_price = plan.wholesale_price.clone(),
                _ => {}
            }
        }
        let values = validate_plan(&merged)?;
        let row = plan_row(id, &values, current.revision + 1, current.create_time);
        sft_plan::Entity::update_many()
            .set(row.clone().into_active_model().reset_all())
            .filter(sft_plan::Column::PlanId.eq(id))
            .filter(sft_plan::Column::Revision.eq(current.revision))
            .exec(&tx)
            .await?;
        tx.commit().await?;
        let answer = convert::sft_plan(&row)?;
        self.remember("UpdateSftPlan", &req.request_id, &hash, answer.encode_to_vec())
            .await?;
        Ok(answer)
    }

    async fn delete_plan(&self, req: pb::DeleteSftPlanRequest) -> Result<pb::DeleteSftPlanResponse> {
        let hash = request_hash(&pb::DeleteSftPlanRequest {
            request_id: String::new(),
            ..req.clone()
        });
        if let Some(bytes) = self.recall("DeleteSftPlan", &req.request_id, &hash).await? {
            return decode(&bytes);
        }
        let id = resource_id(&req.name, "sftPlans", "name", convert::is_plan_id)?;
        let current = self
            .find_plan(id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(req.name.clone()))?;
        if !req.etag.is_empty() && req.etag != convert::etag(&current) {
            return Err(CatalogError::Aborted(format!(
                "{} changed since the etag was read",
                req.name
            )));
        }
        sft_plan::Entity::delete_many()
            .filter(sft_plan::Column::PlanId.eq(id))
            .filter(sft_plan::Column::Revision.eq(current.revision))
            .exec(&self.db)
            .await?;
        let product_id = crate::source::Reference::Sft {
            plan_id: id.to_owned(),
        }
        .product_id();
        let exists = !product::Entity::find()
            .filter(product::Column::Id.eq(product_id.clone()))
            .all(&self.db)
            .await?
            .is_empty();
        let answer = pb::DeleteSftPlanResponse {
            product: if exists {
                format!("products/{product_id}")
            } else {
                String::new()
            },
        };
        self.remember("DeleteSftPlan", &req.request_id, &hash, answer.encode_to_vec())
            .await?;
        Ok(answer)
    }

    // ----- pricing rules ----------------------------------------------------------------------

    fn rule_provider(name: &str, field: &str) -> Result<Provider> {
        let id = resource_id(name, "pricingRules", field, |id| {
            Provider::ALL.iter().any(|p| p.lower() == id)
        })?;
        Provider::ALL
            .into_iter()
            .find(|p| p.lower() == id)
            .ok_or_else(|| CatalogError::invalid(field, "must be pricingRules/mp, /fms or /sft"))
    }

    async fn get_rule(&self, req: pb::GetPricingRuleRequest) -> Result<pb::PricingRule> {
        let provider = Self::rule_provider(&req.name, "name")?;
        let (row, _) = store::load_rule(&self.db, provider).await?;
        convert::pricing_rule(provider, row.as_ref())
    }

    async fn update_rule(&self, req: pb::UpdatePricingRuleRequest) -> Result<pb::PricingRule> {
        let hash = request_hash(&pb::UpdatePricingRuleRequest {
            request_id: String::new(),
            ..req.clone()
        });
        if let Some(bytes) = self.recall("UpdatePricingRule", &req.request_id, &hash).await? {
            return decode(&bytes);
        }
        let rule = req
            .pricing_rule
            .as_ref()
            .ok_or_else(|| CatalogError::invalid("pricing_rule", "is required"))?;
        let provider = Self::rule_provider(&rule.name, "pricing_rule.name")?;
        const FIELDS: [&str; 3] = ["markup_basis_points", "fixed_markup", "price_ending_cents"];
        let paths = mask_paths(req.update_mask.as_ref(), &FIELDS)?;
        if !(0..=crate::pricing::MAX_MARKUP_BASIS_POINTS).contains(&rule.markup_basis_points) {
            return Err(CatalogError::invalid(
                "pricing_rule.markup_basis_points",
                "must be between 0 and 100000",
            ));
        }
        let fixed = rule
            .fixed_markup
            .as_ref()
            .map(|m| convert::parse_money(m, "pricing_rule.fixed_markup"))
            .transpose()?;
        if let Some(cents) = rule.price_ending_cents
            && !(0..=99).contains(&cents)
        {
            return Err(CatalogError::invalid(
                "pricing_rule.price_ending_cents",
                "must be between 0 and 99",
            ));
        }

        let now = store::now();
        let tx = esim_runtime::db::begin_write(&self.db).await?;
        let (current, _) = store::load_rule(&tx, provider).await?;
        let mut row = current.clone().unwrap_or(pricing_rule::Model {
            provider: provider.as_str().to_owned(),
            markup_basis_points: 0,
            fixed_amount: None,
            fixed_currency: None,
            price_ending_cents: None,
            update_time: now,
        });
        for path in &paths {
            match path.as_str() {
                "markup_basis_points" => row.markup_basis_points = rule.markup_basis_points,
                "fixed_markup" => {
                    row.fixed_amount = fixed.map(|m| store::decimal_text(m.amount()));
                    row.fixed_currency = fixed.map(|m| m.currency().to_string());
                }
                "price_ending_cents" => row.price_ending_cents = rule.price_ending_cents,
                _ => {}
            }
        }
        row.update_time = now;
        if current.is_some() {
            pricing_rule::Entity::update_many()
                .set(row.clone().into_active_model().reset_all())
                .filter(pricing_rule::Column::Provider.eq(provider.as_str()))
                .exec(&tx)
                .await?;
        } else {
            pricing_rule::Entity::insert(row.clone().into_active_model().reset_all())
                .exec_without_returning(&tx)
                .await
                .map_err(|e| map_unique(e, "the pricing rule changed concurrently; retry".into()))?;
        }
        let repriced = store::reprice(&tx, provider, &store::rule_of(&row)?, now).await?;
        let version = if repriced > 0 {
            Some(store::bump_version(&tx).await?)
        } else {
            None
        };
        tx.commit().await?;
        if let Some(version) = version {
            self.cache.written(version);
        }
        let answer = convert::pricing_rule(provider, Some(&row))?;
        self.remember(
            "UpdatePricingRule",
            &req.request_id,
            &hash,
            answer.encode_to_vec(),
        )
        .await?;
        Ok(answer)
    }
}

/// Inserts a new plan; ALREADY_EXISTS when the id is taken.
async fn insert_plan(db: &DatabaseConnection, plan_id: &str, values: &PlanValues) -> Result<sft_plan::Model> {
    let exists = !sft_plan::Entity::find()
        .filter(sft_plan::Column::PlanId.eq(plan_id))
        .all(db)
        .await?
        .is_empty();
    if exists {
        return Err(CatalogError::AlreadyExists(format!(
            "sftPlans/{plan_id} already exists"
        )));
    }
    let row = plan_row(plan_id, values, 1, store::now());
    sft_plan::Entity::insert(row.clone().into_active_model().reset_all())
        .exec_without_returning(db)
        .await
        .map_err(|e| map_unique(e, format!("sftPlans/{plan_id} already exists")))?;
    Ok(row)
}

/// Seeds plans from the config file: plans that do not exist yet are created; existing ones
/// are left as the admin API last set them.
pub async fn seed_plans(db: &DatabaseConnection, plans: &[pb::SftPlan]) -> Result<usize> {
    let mut created = 0;
    for plan in plans {
        if !convert::is_plan_id(&plan.plan_id) {
            return Err(CatalogError::invalid(
                "sft_plans.plan_id",
                format!("{:?} is not a plan id", plan.plan_id),
            ));
        }
        let values = validate_plan(plan)?;
        match insert_plan(db, &plan.plan_id, &values).await {
            Ok(_) => created += 1,
            Err(CatalogError::AlreadyExists(_)) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(created)
}

fn request_hash<M: Message>(req: &M) -> String {
    format!("{:016x}", crate::source::fnv1a64(&req.encode_to_vec()))
}

fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M> {
    M::decode(bytes).map_err(|e| CatalogError::Internal(format!("stored response: {e}")))
}

type Answer<T> = std::result::Result<Response<T>, Status>;

fn answer<T>(result: Result<T>) -> Answer<T> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl CatalogService for CatalogApi {
    async fn list_countries(
        &self,
        request: Request<pb::ListCountriesRequest>,
    ) -> Answer<pb::ListCountriesResponse> {
        answer(self.countries(request.into_inner()).await)
    }

    async fn list_products(
        &self,
        request: Request<pb::ListProductsRequest>,
    ) -> Answer<pb::ListProductsResponse> {
        answer(self.products(request.into_inner()).await)
    }

    async fn get_product(&self, request: Request<pb::GetProductRequest>) -> Answer<pb::Product> {
        answer(self.product(request.into_inner()).await)
    }

    async fn sync_catalog(&self, request: Request<pb::SyncCatalogRequest>) -> Answer<pb::SyncRun> {
        answer(self.sync_now(request.into_inner()).await)
    }

    async fn get_sync_run(&self, request: Request<pb::GetSyncRunRequest>) -> Answer<pb::SyncRun> {
        answer(self.run(request.into_inner()).await)
    }

    async fn list_sync_runs(
        &self,
        request: Request<pb::ListSyncRunsRequest>,
    ) -> Answer<pb::ListSyncRunsResponse> {
        answer(self.runs(request.into_inner()).await)
    }

    async fn create_sft_plan(&self, request: Request<pb::CreateSftPlanRequest>) -> Answer<pb::SftPlan> {
        answer(self.create_plan(request.into_inner()).await)
    }

    async fn get_sft_plan(&self, request: Request<pb::GetSftPlanRequest>) -> Answer<pb::SftPlan> {
        answer(self.get_plan(request.into_inner()).await)
    }

    async fn list_sft_plans(
        &self,
        request: Request<pb::ListSftPlansRequest>,
    ) -> Answer<pb::ListSftPlansResponse> {
        answer(self.list_plans(request.into_inner()).await)
    }

    async fn update_sft_plan(&self, request: Request<pb::UpdateSftPlanRequest>) -> Answer<pb::SftPlan> {
        answer(self.update_plan(request.into_inner()).await)
    }

    async fn delete_sft_plan(
        &self,
        request: Request<pb::DeleteSftPlanRequest>,
    ) -> Answer<pb::DeleteSftPlanResponse> {
        answer(self.delete_plan(request.into_inner()).await)
    }

    async fn get_pricing_rule(&self, request: Request<pb::GetPricingRuleRequest>) -> Answer<pb::PricingRule> {
        answer(self.get_rule(request.into_inner()).await)
    }

    async fn update_pricing_rule(
        &self,
        request: Request<pb::UpdatePricingRuleRequest>,
    ) -> Answer<pb::PricingRule> {
        answer(self.update_rule(request.into_inner()).await)
    }
}

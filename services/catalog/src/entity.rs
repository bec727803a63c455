//! The catalog's sea-orm entities. Tables are created by [`crate::migration`].

/// A normalised product. `id` is the resource id (`products/{id}`), stable across syncs.
pub mod product {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "catalog_products")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// `MP`, `FMS` or `SFT`.
        pub provider: String,
        pub mp_goods_id: Option<i64>,
        pub mp_product_id: Option<i64>,
        pub mp_sim_group_code: Option<String>,
        pub fms_package_code: Option<String>,
        pub fms_package_id: Option<i64>,
        pub fms_currency_id: Option<i64>,
        pub fms_period_num: Option<i32>,
        pub sft_plan_id: Option<String>,
        pub display_name: String,
        pub upstream_name: String,
        pub data_bytes: i64,
        pub unlimited: bool,
        /// `data_bytes`, or `i64::MAX` when unlimited: the data sort key.
        pub data_sort: i64,
        pub validity_days: i32,
        /// ISO alpha-2 codes, sorted, comma-separated (the filter uses `catalog_product_countries`).
        pub coverage: String,
        /// Allowed cycle counts, ascending, comma-separated.
        pub cycle_counts: String,
        pub currency: String,
        /// Exact decimal text.
        pub wholesale_amount: String,
        /// Exact decimal text.
        pub retail_amount: String,
        /// The retail amount in nanos: the price sort and filter key.
        pub retail_nanos: i64,
        pub available: bool,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
        pub last_seen_time: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Which countries a product covers: one row per (product, country), indexed by country.
pub mod product_country {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "catalog_product_countries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub product_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub country_code: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A recorded sync run.
pub mod sync_run {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "catalog_sync_runs")]
    pub struct Model {
        /// UUIDv7 text: sorts by start time.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub trigger: String,
        pub outcome: String,
        /// JSON array of per-provider results (`crate::sync::ProviderResult`).
        pub provider_results: String,
        pub start_time: DateTimeUtc,
        pub end_time: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// An operator-configured SFT add-on plan.
pub mod sft_plan {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "catalog_sft_plans")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub plan_id: String,
        pub display_name: String,
        pub data_bytes: i64,
        pub unlimited: bool,
        pub validity_days: i32,
        /// ISO alpha-2 codes, sorted, comma-separated.
        pub coverage: String,
        pub currency: String,
        pub wholesale_amount: String,
        /// Bumped on every change; the etag is derived from it.
        pub revision: i64,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A provider's retail pricing rule. No row means the default rule (no markup).
pub mod pricing_rule {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "catalog_pricing_rules")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub provider: String,
        pub markup_basis_points: i32,
        pub fixed_amount: Option<String>,
        pub fixed_currency: Option<String>,
        pub price_ending_cents: Option<i32>,
        pub update_time: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Small named values shared by replicas: the catalogue version (cache invalidation) and the
/// sync lease.
pub mod meta {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "catalog_meta")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub version: i64,
        pub holder: Option<String>,
        pub expires_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// AIP-155 request ids: what a retried mutation returns.
pub mod idempotency {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "catalog_idempotency_keys")]
    pub struct Model {
        /// `<method>:<request_id>`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        /// Hash of the request without its request id.
        pub request_hash: String,
        /// The stored answer (prost-encoded response, or a sync run id).
        pub response: Vec<u8>,
        pub create_time: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

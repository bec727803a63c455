//! The catalog service's schema. Each service owns its tables; migrations run at start unless
//! `CATALOG_MIGRATE=false`. Money is stored as exact decimal text (the same on SQLite and
//! PostgreSQL) next to an integer nanos column that sorting and filtering use.

use esim_runtime::schema::{big, big_null, flag, int, int_null, text, text_null, text_pk, time, time_null};
use sea_orm_migration::prelude::*;

/// All migrations of the catalog service, oldest first.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateCatalog)]
    }

    fn migration_table_name() -> DynIden {
        // Named per service so services sharing one database cannot clash.
        "seaql_migrations_catalog".into_iden()
    }
}

/// Products, their coverage, sync runs, SFT plans, pricing rules, shared meta values and
/// idempotency keys.
#[derive(Debug, DeriveMigrationName)]
struct CreateCatalog;

const TABLES: [&str; 7] = [
    "catalog_product_countries",
    "catalog_products",
    "catalog_sync_runs",
    "catalog_sft_plans",
    "catalog_pricing_rules",
    "catalog_meta",
    "catalog_idempotency_keys",
];

#[async_trait::async_trait]
impl MigrationTrait for CreateCatalog {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("catalog_products")
                    .col(text_pk("id"))
                    .col(text("provider"))
                    .col(big_null("mp_goods_id"))
                    .col(big_null("mp_product_id"))
                    .col(text_null("mp_sim_group_code"))
                    .col(text_null("fms_package_code"))
                    .col(big_null("fms_package_id"))
                    .col(big_null("fms_currency_id"))
                    .col(int_null("fms_period_num"))
                    .col(text_null("sft_plan_id"))
                    .col(text("display_name"))
                    .col(text("upstream_name"))
                    .col(big("data_bytes"))
                    .col(flag("unlimited"))
                    .col(big("data_sort"))
                    .col(int("validity_days"))
                    .col(text("coverage"))
                    .col(text("cycle_counts"))
                    .col(text("currency"))
                    .col(text("wholesale_amount"))
                    .col(text("retail_amount"))
                    .col(big("retail_nanos"))
                    .col(flag("available"))
                    .col(time("create_time"))
                    .col(time("update_time"))
                    .col(time("last_seen_time"))
                    .to_owned(),
            )
            .await?;
        // The two list orders, as keyset scans.
        for (name, cols) in [
            ("idx_catalog_products_price", ["available", "retail_nanos", "id"]),
            ("idx_catalog_products_data", ["available", "data_sort", "id"]),
        ] {
            let mut index = Index::create();
            index.name(name).table("catalog_products");
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_catalog_products_provider")
                    .table("catalog_products")
                    .col("provider")
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("catalog_product_countries")
                    .col(text("product_id"))
                    .col(text("country_code"))
                    .primary_key(Index::create().col("product_id").col("country_code"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_catalog_product_countries_product")
                            .from("catalog_product_countries", "product_id")
                            .to("catalog_products", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The country filter: an indexed lookup by country.
        manager
            .create_index(
                Index::create()
                    .name("idx_catalog_product_countries_country")
                    .table("catalog_product_countries")
                    .col("country_code")
                    .col("product_id")
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("catalog_sync_runs")
                    .col(text_pk("id"))
                    .col(text("trigger"))
                    .col(text("outcome"))
                    .col(text("provider_results"))
                    .col(time("start_time"))
                    .col(time_null("end_time"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("catalog_sft_plans")
                    .col(text_pk("plan_id"))
                    .col(text("display_name"))
                    .col(big("data_bytes"))
                    .col(flag("unlimited"))
                    .col(int("validity_days"))
                    .col(text("coverage"))
                    .col(text("currency"))
                    .col(text("wholesale_amount"))
                    .col(big("revision"))
                    .col(time("create_time"))
                    .col(time("update_time"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("catalog_pricing_rules")
                    .col(text_pk("provider"))
                    .col(int("markup_basis_points"))
                    .col(text_null("fixed_amount"))
                    .col(text_null("fixed_currency"))
                    .col(int_null("price_ending_cents"))
                    .col(time("update_time"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("catalog_meta")
                    .col(text_pk("name"))
                    .col(big("version"))
                    .col(text_null("holder"))
                    .col(time_null("expires_at"))
                    .to_owned(),
            )
            .await?;
        // The rows exist from the start so version bumps and lease claims are plain UPDATEs.
        manager
            .exec_stmt(
                Query::insert()
                    .into_table("catalog_meta")
                    .columns(["name", "version"])
                    .values_panic(["version".into(), 0i64.into()])
                    .values_panic(["sync_lease".into(), 0i64.into()])
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("catalog_idempotency_keys")
                    .col(text_pk("key"))
                    .col(text("request_hash"))
                    .col(ColumnDef::new("response").blob().not_null())
                    .col(time("create_time"))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in TABLES {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

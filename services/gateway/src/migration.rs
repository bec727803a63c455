//! The gateway service's schema. Each service owns its tables; migrations run at start unless
//! `GATEWAY_MIGRATE=false` (and before every `esim-keys` command).

use esim_runtime::schema::{int_null, text, text_pk, time, time_null};
use sea_orm_migration::prelude::*;

/// All migrations of the gateway service, oldest first.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateApiKeys)]
    }

    fn migration_table_name() -> DynIden {
        // Named per service so services sharing one database cannot clash.
        "seaql_migrations_gateway".into_iden()
    }
}

/// API keys and the request ids of their mutations.
#[derive(Debug, DeriveMigrationName)]
struct CreateApiKeys;

const TABLES: [&str; 2] = ["gateway_api_keys", "gateway_idempotency_keys"];

#[async_trait::async_trait]
impl MigrationTrait for CreateApiKeys {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("gateway_api_keys")
                    .col(text_pk("id"))
                    .col(text("display_name"))
                    .col(text("scopes"))
                    .col(text("key_prefix"))
                    .col(text("key_hash"))
                    .col(int_null("rate_limit_rps"))
                    .col(int_null("rate_limit_burst"))
                    .col(text("state"))
                    .col(time("create_time"))
                    .col(time("update_time"))
                    .col(time_null("revoke_time"))
                    .to_owned(),
            )
            .await?;
        // Authentication finds a key by its hash; two keys can never share one.
        manager
            .create_index(
                Index::create()
                    .name("idx_gateway_api_keys_hash")
                    .table("gateway_api_keys")
                    .col("key_hash")
                    .unique()
                    .to_owned(),
            )
            .await?;
        // The cache refresh (active keys) and the list (newest first, by state).
        manager
            .create_index(
                Index::create()
                    .name("idx_gateway_api_keys_state")
                    .table("gateway_api_keys")
                    .col("state")
                    .col("id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("gateway_idempotency_keys")
                    .col(text_pk("key"))
                    .col(text("request_hash"))
                    .col(ColumnDef::new("response").blob().not_null())
                    .col(time("create_time"))
                    .to_owned(),
            )
            .await
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

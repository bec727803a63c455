//! The usage service's schema. Each service owns its tables; migrations run at start unless
//! `USAGE_MIGRATE=false`.
//!
//! * `usage_esims`: tracked eSIMs, their upstream references, the poller's lease and schedule.
//! * `usage_mp_orders`: MP order codes (original and top-ups) → eSIM; matches callbacks.
//! * `usage_snapshots`: what the upstream reported, when (append-only; the newest one serves).
//! * `usage_daily`: data used per day (MP daily traffic), one row per eSIM and day.
//! * `usage_alerts`: the alert log. `id` is the cursor (append-only, increasing); `dedup_key`
//!   is UNIQUE so a repeated alert inserts nothing.

use esim_runtime::schema::{big, flag, int, text, text_null, time, time_null};
use sea_orm_migration::prelude::*;

/// All migrations of the usage service, oldest first.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateUsage)]
    }

    fn migration_table_name() -> DynIden {
        // Named per service so services sharing one database cannot clash.
        "seaql_migrations_usage".into_iden()
    }
}

#[derive(Debug, DeriveMigrationName)]
struct CreateUsage;

fn serial_pk(name: &'static str) -> ColumnDef {
    ColumnDef::new(name)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

const TABLES: [&str; 5] = [
    "usage_alerts",
    "usage_daily",
    "usage_snapshots",
    "usage_mp_orders",
    "usage_esims",
];

async fn index(
    manager: &SchemaManager<'_>,
    name: &str,
    table: &'static str,
    cols: &[&'static str],
    unique: bool,
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(table);
    for col in cols {
        index.col(*col);
    }
    if unique {
        index.unique();
    }
    manager.create_index(index.to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for CreateUsage {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("usage_esims")
                    .col(ColumnDef::new("esim").text().not_null().primary_key())
                    .col(text("order_name"))
                    .col(text("provider"))
                    .col(text_null("iccid"))
                    .col(text_null("sft_endpoint_id"))
                    .col(text_null("fms_order_no"))
                    .col(big("plan_data_bytes"))
                    .col(time_null("plan_end_time"))
                    .col(text("alerted"))
                    .col(time("next_poll_time"))
                    .col(time_null("lease_until"))
                    .col(text_null("lease_owner"))
                    .col(time("create_time"))
                    .col(time("update_time"))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_usage_esims_poll",
            "usage_esims",
            &["provider", "next_poll_time"],
            false,
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table("usage_mp_orders")
                    .col(ColumnDef::new("order_code").text().not_null().primary_key())
                    .col(text("esim"))
                    .col(time("create_time"))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_usage_mp_orders_esim",
            "usage_mp_orders",
            &["esim"],
            false,
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table("usage_snapshots")
                    .col(serial_pk("id"))
                    .col(text("esim"))
                    .col(time("taken_at"))
                    .col(big("total_bytes"))
                    .col(big("used_bytes"))
                    .col(flag("unlimited"))
                    .col(time_null("validity_start"))
                    .col(time_null("validity_end"))
                    .col(text("source"))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_usage_snapshots_esim",
            "usage_snapshots",
            &["esim", "id"],
            false,
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table("usage_daily")
                    .col(text("esim"))
                    .col(text("day"))
                    .col(big("used_bytes"))
                    .col(time("update_time"))
                    .primary_key(Index::create().col("esim").col("day"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("usage_alerts")
                    .col(serial_pk("id"))
                    .col(text("dedup_key"))
                    .col(text("esim"))
                    .col(text("order_name"))
                    .col(text("provider"))
                    .col(int("kind"))
                    .col(int("source"))
                    .col(int("threshold_percent"))
                    .col(time_null("expire_time"))
                    .col(text("mp_order_code"))
                    .col(text("mp_package_code"))
                    .col(text("eid"))
                    .col(time("create_time"))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "uq_usage_alerts_dedup",
            "usage_alerts",
            &["dedup_key"],
            true,
        )
        .await?;
        index(
            manager,
            "idx_usage_alerts_esim",
            "usage_alerts",
            &["esim", "id"],
            false,
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

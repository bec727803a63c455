//! The ordering service's schema. Each service owns its tables; migrations run at start unless
//! `ORDERING_MIGRATE=false`. Money is stored as exact decimal text (identical on SQLite and
//! PostgreSQL); timestamps with time zone.

use esim_runtime::schema::{big, big_null, flag, int, int_null, text, text_null, text_pk, time, time_null};
use sea_orm_migration::prelude::*;

/// All migrations of the ordering service, oldest first.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateOrdering)]
    }

    fn migration_table_name() -> DynIden {
        // Named per service so services sharing one database cannot clash.
        "seaql_migrations_ordering".into_iden()
    }
}

/// Orders, their events, idempotency keys, FMS accounts and top-ups.
#[derive(Debug, DeriveMigrationName)]
struct CreateOrdering;

async fn index(
    manager: &SchemaManager<'_>,
    name: &str,
    table: &str,
    cols: &[&'static str],
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(table.to_owned());
    for col in cols {
        index.col(*col);
    }
    manager.create_index(index.to_owned()).await
}

const TABLES: [&str; 5] = [
    "ordering_top_ups",
    "ordering_fms_accounts",
    "ordering_idempotency_keys",
    "ordering_order_events",
    "ordering_orders",
];

#[async_trait::async_trait]
impl MigrationTrait for CreateOrdering {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("ordering_orders")
                    .col(text_pk("id"))
                    .col(text("request_id"))
                    .col(text("customer_reference"))
                    .col(text("customer_email"))
                    .col(text("provider"))
                    .col(text("product"))
                    .col(text("product_display_name"))
                    .col(big("product_data_bytes"))
                    .col(flag("product_unlimited"))
                    .col(int("product_validity_days"))
                    .col(text("product_coverage"))
                    .col(big_null("mp_goods_id"))
                    .col(big_null("mp_product_id"))
                    .col(text_null("mp_sim_group_code"))
                    .col(text_null("fms_package_code"))
                    .col(big_null("fms_package_id"))
                    .col(big_null("fms_currency_id"))
                    .col(int_null("fms_period_num"))
                    .col(text_null("sft_plan_id"))
                    .col(int("cycle_count"))
                    .col(text_null("target_iccid"))
                    .col(flag("activate_immediately"))
                    .col(text("currency"))
                    .col(text("unit_wholesale"))
                    .col(text("unit_retail"))
                    .col(text("total_wholesale"))
                    .col(text("total_retail"))
                    .col(text("state"))
                    .col(text("state_reason"))
                    .col(text_null("mp_order_code"))
                    .col(text_null("iccid"))
                    .col(text_null("activation_code_enc"))
                    .col(big_null("fms_pre_order_id"))
                    .col(text_null("fms_order_no"))
                    .col(text_null("fms_amount"))
                    .col(text_null("fms_currency"))
                    .col(text_null("sft_endpoint_id"))
                    .col(text_null("esim_name"))
                    .col(flag("refund_required"))
                    .col(time_null("payment_deadline"))
                    .col(text_null("payment_outcome"))
                    .col(text_null("payment_amount"))
                    .col(text_null("payment_reference"))
                    .col(time_null("payment_time"))
                    .col(time_null("payment_report_time"))
                    .col(text_null("payment_notify_state"))
                    .col(time_null("payment_notify_time"))
                    .col(text("saga_step"))
                    .col(time("next_attempt_at"))
                    .col(int("attempts"))
                    .col(text_null("last_error"))
                    .col(text_null("lease_owner"))
                    .col(time_null("lease_until"))
                    .col(big("version"))
                    .col(time("create_time"))
                    .col(time("update_time"))
                    .col(time_null("activate_time"))
                    .col(time_null("end_time"))
                    .to_owned(),
            )
            .await?;
        // The worker's queue scan, and the list orders.
        index(
            manager,
            "idx_ordering_orders_queue",
            "ordering_orders",
            &["saga_step", "next_attempt_at"],
        )
        .await?;
        index(
            manager,
            "idx_ordering_orders_created",
            "ordering_orders",
            &["create_time", "id"],
        )
        .await?;
        index(
            manager,
            "idx_ordering_orders_customer",
            "ordering_orders",
            &["customer_reference", "create_time", "id"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("ordering_order_events")
                    .col(text("order_id"))
                    .col(big("sequence"))
                    .col(text("previous_state"))
                    .col(text("state"))
                    .col(text("reason"))
                    .col(time("create_time"))
                    .primary_key(Index::create().col("order_id").col("sequence"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("ordering_idempotency_keys")
                    .col(text("scope"))
                    .col(text("request_id"))
                    .col(text("fingerprint"))
                    .col(text("order_id"))
                    .col(text_null("resource_id"))
                    .col(time("create_time"))
                    .primary_key(Index::create().col("scope").col("request_id"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("ordering_fms_accounts")
                    .col(text_pk("customer_reference"))
                    .col(text("email"))
                    .col(text("passwd_enc"))
                    .col(text("status"))
                    .col(time("create_time"))
                    .col(time("update_time"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("ordering_top_ups")
                    .col(text_pk("id"))
                    .col(text("order_id"))
                    .col(text("request_id"))
                    .col(text("state"))
                    .col(text("state_reason"))
                    .col(text_null("mp_order_code"))
                    .col(int_null("mp_renew_period"))
                    .col(text_null("sft_addon"))
                    .col(text_null("sft_plan_id"))
                    .col(text("currency"))
                    .col(text("retail_price"))
                    .col(time("create_time"))
                    .col(time("update_time"))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_ordering_top_ups_order",
            "ordering_top_ups",
            &["order_id", "create_time"],
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in TABLES {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

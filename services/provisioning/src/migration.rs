//! The provisioning service's schema. Each service owns its tables; migrations run at start
//! unless `PROVISIONING_MIGRATE=false`.

use esim_runtime::schema::{text, text_null, text_pk, time, time_null};
use sea_orm_migration::prelude::*;

/// All migrations of the provisioning service, oldest first.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateProvisioning)]
    }

    fn migration_table_name() -> DynIden {
        // Named per service so services sharing one database cannot clash.
        "seaql_migrations_provisioning".into_iden()
    }
}

/// eSIMs, add-ons, SIM claims and idempotency keys.
#[derive(Debug, DeriveMigrationName)]
struct CreateProvisioning;

const TABLES: [&str; 4] = [
    "provisioning_esims",
    "provisioning_addons",
    "provisioning_sim_claims",
    "provisioning_idempotency_keys",
];

#[async_trait::async_trait]
impl MigrationTrait for CreateProvisioning {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("provisioning_esims")
                    .col(text_pk("id"))
                    .col(text("order_name"))
                    .col(text("provider"))
                    .col(text_null("iccid"))
                    .col(text_null("eid"))
                    .col(text_null("sft_endpoint_id"))
                    .col(text_null("upstream_order_code"))
                    .col(text_null("fms_order_no"))
                    .col(text_null("activation_code_enc"))
                    .col(text("state"))
                    .col(text("state_reason"))
                    .col(ColumnDef::new("failure_code").integer().null())
                    .col(text("step"))
                    .col(text_null("sft_plan_id"))
                    .col(text("request_id"))
                    .col(text("request_hash"))
                    .col(time_null("lease_until"))
                    .col(time("create_time"))
                    .col(time("update_time"))
                    .col(time_null("activate_time"))
                    .col(time_null("deliver_time"))
                    .col(time_null("terminate_time"))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        // One live eSIM per order; a failed one does not block a new attempt. Partial unique
        // indexes read the same on SQLite and PostgreSQL.
        db.execute_unprepared(
            "CREATE UNIQUE INDEX idx_provisioning_esims_order ON provisioning_esims (order_name) \
             WHERE state <> 'failed'",
        )
        .await?;
        for (name, cols, unique) in [
            ("idx_provisioning_esims_request", &["request_id"][..], true),
            ("idx_provisioning_esims_iccid", &["iccid"][..], false),
            (
                "idx_provisioning_esims_order_all",
                &["order_name", "id"][..],
                false,
            ),
            ("idx_provisioning_esims_state", &["state", "id"][..], false),
        ] {
            let mut index = Index::create();
            index.name(name).table("provisioning_esims");
            for col in cols {
                index.col(*col);
            }
            if unique {
                index.unique();
            }
            manager.create_index(index.to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table("provisioning_addons")
                    .col(text_pk("id"))
                    .col(text("esim_id"))
                    .col(text_null("unique_id"))
                    .col(text("sft_endpoint_id"))
                    .col(text("sft_plan_id"))
                    .col(text_null("order_name"))
                    .col(text("state"))
                    .col(text("state_reason"))
                    .col(text("request_id"))
                    .col(text("request_hash"))
                    .col(time_null("purchase_time"))
                    .col(time_null("validity_start_time"))
                    .col(time_null("validity_end_time"))
                    .col(time("create_time"))
                    .col(time("update_time"))
                    .to_owned(),
            )
            .await?;
        for (name, cols, unique) in [
            ("idx_provisioning_addons_request", &["request_id"][..], true),
            ("idx_provisioning_addons_unique_id", &["unique_id"][..], true),
            ("idx_provisioning_addons_esim", &["esim_id", "id"][..], false),
        ] {
            let mut index = Index::create();
            index.name(name).table("provisioning_addons");
            for col in cols {
                index.col(*col);
            }
            if unique {
                index.unique();
            }
            manager.create_index(index.to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table("provisioning_sim_claims")
                    .col(text_pk("sft_endpoint_id"))
                    .col(text("iccid"))
                    .col(text("esim_id"))
                    .col(text("status"))
                    .col(text("reason"))
                    .col(time("create_time"))
                    .col(time("update_time"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_provisioning_sim_claims_esim")
                    .table("provisioning_sim_claims")
                    .col("esim_id")
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("provisioning_idempotency_keys")
                    .col(text_pk("key"))
                    .col(text("request_hash"))
                    .col(ColumnDef::new("response").binary().not_null())
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

//! The gateway service's schema. Each service owns its tables; migrations run at start unless
//! `GATEWAY_MIGRATE=false`.

use sea_orm_migration::prelude::*;

/// All migrations of the gateway service, oldest first.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        // The service's tables arrive with its domain API; the migration history (and its
        // table, below) exists from the first release so upgrades stay linear.
        Vec::new()
    }

    fn migration_table_name() -> DynIden {
        // Named per service so services sharing one database cannot clash.
        "seaql_migrations_gateway".into_iden()
    }
}

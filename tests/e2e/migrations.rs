//! Every service's migrations apply on SQLite and PostgreSQL and are idempotent: a restart
//! re-runs them without error or change.

use esim_runtime::db::{connect_and_migrate, testing};
use sea_orm_migration::MigratorTrait;

async fn migrate_twice<M: MigratorTrait>() {
    for database in testing::fresh_databases().await.unwrap() {
        let first = connect_and_migrate::<M>(&database.url, true).await.unwrap();
        let applied = M::get_applied_migrations(&first).await.unwrap().len();
        assert_eq!(applied, M::migrations().len(), "{}", database.url);
        first.close().await.unwrap();
        let second = connect_and_migrate::<M>(&database.url, true).await.unwrap();
        assert_eq!(M::get_applied_migrations(&second).await.unwrap().len(), applied);
        assert!(M::get_pending_migrations(&second).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn catalog_migrations() {
    migrate_twice::<esim_catalog::migration::Migrator>().await;
}

#[tokio::test]
async fn ordering_migrations() {
    migrate_twice::<esim_ordering::migration::Migrator>().await;
}

#[tokio::test]
async fn provisioning_migrations() {
    migrate_twice::<esim_provisioning::migration::Migrator>().await;
}

#[tokio::test]
async fn usage_migrations() {
    migrate_twice::<esim_usage::migration::Migrator>().await;
}

#[tokio::test]
async fn gateway_migrations() {
    migrate_twice::<esim_gateway::migration::Migrator>().await;
}

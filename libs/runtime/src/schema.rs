//! Column shorthands for the services' sea-orm migrations, so every service declares its tables
//! the same way on SQLite and PostgreSQL (text ids, 64-bit counters, UTC timestamps).

use sea_orm_migration::prelude::ColumnDef;

/// `TEXT NOT NULL`.
pub fn text(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).text().not_null().to_owned()
}
/// `TEXT NULL`.
pub fn text_null(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).text().null().to_owned()
}
/// `TEXT` primary key.
pub fn text_pk(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).text().not_null().primary_key().to_owned()
}
/// `BIGINT NOT NULL`.
pub fn big(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).big_integer().not_null().to_owned()
}
/// `BIGINT NULL`.
pub fn big_null(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).big_integer().null().to_owned()
}
/// `INTEGER NOT NULL`.
pub fn int(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).integer().not_null().to_owned()
}
/// `INTEGER NULL`.
pub fn int_null(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).integer().null().to_owned()
}
/// `BOOLEAN NOT NULL`.
pub fn flag(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).boolean().not_null().to_owned()
}
/// `TIMESTAMP WITH TIME ZONE NOT NULL`.
pub fn time(name: &'static str) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}
/// `TIMESTAMP WITH TIME ZONE NULL`.
pub fn time_null(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).timestamp_with_time_zone().null().to_owned()
}

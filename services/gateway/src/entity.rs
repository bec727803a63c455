//! The gateway's sea-orm entities. Tables are created by [`crate::migration`].

/// An API key. Never the key itself: its SHA-256 and its shown prefix.
pub mod api_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "gateway_api_keys")]
    pub struct Model {
        /// The `{api_key}` of `apiKeys/{api_key}`: a UUIDv7 in simple form, so ids sort by
        /// creation time (the list order).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub display_name: String,
        /// Scope names, comma-separated (`read,order`).
        pub scopes: String,
        /// The first 8 characters of the key (`esk_7Fq2`).
        pub key_prefix: String,
        /// SHA-256 of the whole key, 64 lowercase hex digits; unique.
        pub key_hash: String,
        /// The key's own rate limit (both set or both unset).
        pub rate_limit_rps: Option<i32>,
        pub rate_limit_burst: Option<i32>,
        /// `ACTIVE` or `REVOKED`.
        pub state: String,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
        pub revoke_time: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// AIP-155 request ids of the key mutations: what a retry returns.
pub mod idempotency {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "gateway_idempotency_keys")]
    pub struct Model {
        /// `<method>:<request_id>`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        /// SHA-256 (hex) of the request without its request id.
        pub request_hash: String,
        /// The prost-encoded `ApiKey` the first call answered with.
        pub response: Vec<u8>,
        pub create_time: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

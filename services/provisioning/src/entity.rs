//! The provisioning service's sea-orm entities. Tables are created by [`crate::migration`].
//! Enumerations are stored as lower-case text (the same on SQLite and PostgreSQL).

/// An eSIM: order ↔ ICCID ↔ EID ↔ SFT endpoint ↔ upstream order ↔ activation code, and its
/// runtime state. `id` is the resource id (`esims/{id}`), a time-ordered ULID.
pub mod esim {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "provisioning_esims")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// `orders/{order}`. Unique among eSIMs that did not fail.
        pub order_name: String,
        /// `MP`, `FMS` or `SFT`.
        pub provider: String,
        pub iccid: Option<String>,
        pub eid: Option<String>,
        pub sft_endpoint_id: Option<String>,
        pub upstream_order_code: Option<String>,
        pub fms_order_no: Option<String>,
        /// `v1.<key id>.<base64>` (see `crate::crypto`); never the plain code.
        pub activation_code_enc: Option<String>,
        /// selected / activated / delivered / suspended / terminated / failed.
        pub state: String,
        pub state_reason: String,
        /// The gRPC code a failed provision answered with, so a retry answers the same.
        pub failure_code: Option<i32>,
        /// Progress of an SFT provision: claiming / activating / subscribing / done.
        pub step: String,
        pub sft_plan_id: Option<String>,
        /// The create/provision request id (AIP-155) and a hash of the request.
        pub request_id: String,
        pub request_hash: String,
        /// Who may work on an unfinished provision until when (a retry after a crash resumes
        /// only once it has passed).
        pub lease_until: Option<DateTimeUtc>,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
        pub activate_time: Option<DateTimeUtc>,
        pub deliver_time: Option<DateTimeUtc>,
        pub terminate_time: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// An SFT add-on instance on an eSIM's endpoint.
pub mod addon {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "provisioning_addons")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub esim_id: String,
        /// SFT `uniqueId` (addonInstanceId); unset while pending.
        pub unique_id: Option<String>,
        pub sft_endpoint_id: String,
        pub sft_plan_id: String,
        pub order_name: Option<String>,
        /// pending / active / exhausted / expired / failed / cancelled.
        pub state: String,
        pub state_reason: String,
        /// The CreateAddon request id (or `provision:<eSIM request id>` for the first add-on).
        pub request_id: String,
        pub request_hash: String,
        pub purchase_time: Option<DateTimeUtc>,
        pub validity_start_time: Option<DateTimeUtc>,
        pub validity_end_time: Option<DateTimeUtc>,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// An SFT SIM taken from the pool. `fetchSIM` reserves nothing upstream, so this table is what
/// keeps two provisions (on any replica) from taking the same SIM: the endpoint id is the
/// primary key, and a claim is an insert that does nothing when the row exists.
pub mod sim_claim {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "provisioning_sim_claims")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub sft_endpoint_id: String,
        pub iccid: String,
        pub esim_id: String,
        /// claimed (provision in flight) / assigned (the eSIM's for good) / quarantined (its
        /// upstream state is unknown or needs an operator; never claimed again by itself).
        /// A released claim is deleted, so the SIM can be claimed again.
        pub status: String,
        pub reason: String,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// AIP-155 request ids of the lifecycle calls: what a retried call returns.
pub mod idempotency {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "provisioning_idempotency_keys")]
    pub struct Model {
        /// `<method>:<request_id>`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        /// Hash of the request without its request id.
        pub request_hash: String,
        /// The prost-encoded response.
        pub response: Vec<u8>,
        pub create_time: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

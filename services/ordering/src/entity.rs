//! The ordering service's sea-orm entities. Tables are created by [`crate::migration`].

/// An order: the product snapshot copied at creation, prices as exact decimal text, the state,
/// the upstream references as they become known, and the saga's progress with its lease.
pub mod order {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ordering_orders")]
    pub struct Model {
        /// The resource id (`orders/{id}`), a ULID.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The idempotency key of the creating call.
        pub request_id: String,
        pub customer_reference: String,
        pub customer_email: String,
        /// `MP`, `FMS` or `SFT`.
        pub provider: String,
        /// `products/{id}`.
        pub product: String,
        pub product_display_name: String,
        pub product_data_bytes: i64,
        pub product_unlimited: bool,
        pub product_validity_days: i32,
        /// ISO alpha-2 codes, comma-separated.
        pub product_coverage: String,
        pub mp_goods_id: Option<i64>,
        pub mp_product_id: Option<i64>,
        pub mp_sim_group_code: Option<String>,
        pub fms_package_code: Option<String>,
        pub fms_package_id: Option<i64>,
        pub fms_currency_id: Option<i64>,
        pub fms_period_num: Option<i32>,
        pub sft_plan_id: Option<String>,
        pub cycle_count: i32,
        pub target_iccid: Option<String>,
        pub activate_immediately: bool,
        pub currency: String,
        /// Exact decimal text, one cycle.
        pub unit_wholesale: String,
        /// Exact decimal text, one cycle.
        pub unit_retail: String,
        /// Exact decimal text, all cycles.
        pub total_wholesale: String,
        /// Exact decimal text, all cycles.
        pub total_retail: String,
        /// `OrderState` name without prefix (`PENDING`, `ACTIVE`, ...).
        pub state: String,
        pub state_reason: String,
        pub mp_order_code: Option<String>,
        pub iccid: Option<String>,
        /// The activation code, encrypted (needed to hand it to provisioning after a crash).
        pub activation_code_enc: Option<String>,
        pub fms_pre_order_id: Option<i64>,
        pub fms_order_no: Option<String>,
        /// What FMS charges for the pre-order (exact decimal text), in `fms_currency`.
        pub fms_amount: Option<String>,
        pub fms_currency: Option<String>,
        pub sft_endpoint_id: Option<String>,
        /// `esims/{id}` in provisioning.
        pub esim_name: Option<String>,
        pub refund_required: bool,
        pub payment_deadline: Option<DateTimeUtc>,
        /// `SUCCEEDED` / `FAILED` once reported.
        pub payment_outcome: Option<String>,
        pub payment_amount: Option<String>,
        pub payment_reference: Option<String>,
        pub payment_time: Option<DateTimeUtc>,
        pub payment_report_time: Option<DateTimeUtc>,
        /// `PENDING` (recorded, not sent) → `SENDING` (persisted right before the send) →
        /// `SENT` / `UNKNOWN` (no answer: resolved by status query, never re-sent).
        pub payment_notify_state: Option<String>,
        pub payment_notify_time: Option<DateTimeUtc>,
        /// The saga's next step (see [`crate::saga::Step`]); `DONE` when nothing is left.
        pub saga_step: String,
        /// Not before this time (backoff, polling, payment deadline).
        pub next_attempt_at: DateTimeUtc,
        pub attempts: i32,
        pub last_error: Option<String>,
        /// The replica holding the step, until `lease_until`.
        pub lease_owner: Option<String>,
        pub lease_until: Option<DateTimeUtc>,
        /// Bumped by every update (optimistic concurrency).
        pub version: i64,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
        pub activate_time: Option<DateTimeUtc>,
        pub end_time: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Every state change of an order, append-only.
pub mod order_event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ordering_order_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub sequence: i64,
        /// Empty for the creating event.
        pub previous_state: String,
        pub state: String,
        pub reason: String,
        pub create_time: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Idempotency keys: `(scope, request_id)` unique, the request's fingerprint, and what it made.
pub mod idempotency_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ordering_idempotency_keys")]
    pub struct Model {
        /// `CreateOrder`, `TopUpOrder`, ...
        #[sea_orm(primary_key, auto_increment = false)]
        pub scope: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_id: String,
        /// SHA-256 of the request's canonical form.
        pub fingerprint: String,
        pub order_id: String,
        /// The created sub-resource (a top-up id), if any.
        pub resource_id: Option<String>,
        pub create_time: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A customer's FMS account: e-mail and the MD5 of the password FMS knows, encrypted.
pub mod fms_account {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ordering_fms_accounts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_reference: String,
        pub email: String,
        /// The password's MD5 hex (what FMS logs in with), AEAD-encrypted.
        pub passwd_enc: String,
        /// `NEW` (not registered yet) or `REGISTERED`.
        pub status: String,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Top-ups of orders.
pub mod top_up {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ordering_top_ups")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub order_id: String,
        pub request_id: String,
        /// `TopUpState` name without prefix.
        pub state: String,
        pub state_reason: String,
        pub mp_order_code: Option<String>,
        pub mp_renew_period: Option<i32>,
        pub sft_addon: Option<String>,
        pub sft_plan_id: Option<String>,
        pub currency: String,
        /// Exact decimal text.
        pub retail_price: String,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

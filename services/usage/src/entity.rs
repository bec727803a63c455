//! The usage service's sea-orm entities. Tables are created by [`crate::migration`].

/// A tracked eSIM. `esim` is the eSIM id (the `{esim}` of `esims/{esim}`).
pub mod esim {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "usage_esims")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub esim: String,
        /// The order id (the `{order}` of `orders/{order}`).
        pub order_name: String,
        /// `MP`, `FMS` or `SFT`.
        pub provider: String,
        pub iccid: Option<String>,
        pub sft_endpoint_id: Option<String>,
        pub fms_order_no: Option<String>,
        /// Data as sold, bytes (0: unknown or unlimited).
        pub plan_data_bytes: i64,
        pub plan_end_time: Option<DateTimeUtc>,
        /// Poller alerts already stored, comma-separated dedup keys' tails (`u50`, `e<ts>`), so
        /// a poll does not retry inserts it knows are duplicates.
        pub alerted: String,
        /// When the poller should look at this eSIM next.
        pub next_poll_time: DateTimeUtc,
        /// A poller replica holds this row until then (row lease).
        pub lease_until: Option<DateTimeUtc>,
        pub lease_owner: Option<String>,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// An MP order code of a tracked eSIM.
pub mod mp_order {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "usage_mp_orders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_code: String,
        pub esim: String,
        pub create_time: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A usage snapshot: what the upstream reported at `taken_at`.
pub mod snapshot {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "usage_snapshots")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub esim: String,
        pub taken_at: DateTimeUtc,
        pub total_bytes: i64,
        pub used_bytes: i64,
        pub unlimited: bool,
        pub validity_start: Option<DateTimeUtc>,
        pub validity_end: Option<DateTimeUtc>,
        /// Which upstream call produced it (`mp.queryTraffic`, `sft.addonDetails`).
        pub source: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Data used on one day (`day` is `YYYY-MM-DD`, the upstream's calendar).
pub mod daily {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "usage_daily")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub esim: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub day: String,
        pub used_bytes: i64,
        pub update_time: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// One alert of the append-only alert log; `id` is its cursor.
pub mod alert {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "usage_alerts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        /// UNIQUE: what makes two alerts the same (e.g. `mp:<orderCode>:u84`, `esim:<id>:u50`).
        pub dedup_key: String,
        /// eSIM id; empty when the alert matched no tracked eSIM.
        pub esim: String,
        /// Order id; empty when unknown.
        pub order_name: String,
        pub provider: String,
        /// `AlertKind` number.
        pub kind: i32,
        /// `AlertSource` number.
        pub source: i32,
        pub threshold_percent: i32,
        pub expire_time: Option<DateTimeUtc>,
        pub mp_order_code: String,
        pub mp_package_code: String,
        pub eid: String,
        pub create_time: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

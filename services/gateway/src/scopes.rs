//! Scopes, and the one table that says which scope every public method requires.
//!
//! The table follows the `Scope` docs of `esim.gateway.v1`: READ for the catalogue and every
//! get / list / watch; ORDER for what a shop does to sell and manage a traveller's eSIM (create,
//! pay, top up, cancel, lifecycle, hand-over); ADMIN for API keys and operator-only work. A
//! method that is not in the table is refused (PERMISSION_DENIED), so a new RPC is closed until
//! someone classifies it; a test walks the descriptor set so that cannot ship unnoticed.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use esim_proto::gateway::v1 as pb;

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Catalogue reads and every get / list / watch.
    Read,
    /// Orders, payments, top-ups, cancellation, eSIM lifecycle and hand-over.
    Order,
    /// API keys, catalogue sync, SFT plans, pricing rules, callback registration, and the
    /// steps only the suite itself (or an operator repairing it) takes.
    Admin,
}

impl Scope {
    /// Every scope, in a stable order (also the order of a [`ScopeSet`]'s listing).
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Order, Scope::Admin];

    /// The stored and command-line name: `read`, `order`, `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Order => "order",
            Self::Admin => "admin",
        }
    }

    /// The scope of a stored or command-line name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(name.trim()))
    }

    /// The API enum value.
    pub fn to_proto(self) -> pb::Scope {
        match self {
            Self::Read => pb::Scope::Read,
            Self::Order => pb::Scope::Order,
            Self::Admin => pb::Scope::Admin,
        }
    }

    /// The scope of an API enum value (`None` for UNSPECIFIED and unknown numbers).
    pub fn from_proto(value: i32) -> Option<Self> {
        match pb::Scope::try_from(value).ok()? {
            pb::Scope::Read => Some(Self::Read),
            pb::Scope::Order => Some(Self::Order),
            pb::Scope::Admin => Some(Self::Admin),
            pb::Scope::Unspecified => None,
        }
    }

    /// Position in per-scope arrays.
    pub fn index(self) -> usize {
        match self {
            Self::Read => 0,
            Self::Order => 1,
            Self::Admin => 2,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes (a bit set: checking one on the hot path is a mask test).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScopeSet(u8);

impl ScopeSet {
    /// Every scope (the bootstrap key).
    pub fn all() -> Self {
        Scope::ALL.into_iter().collect()
    }

    /// Whether `scope` is granted.
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & (1 << scope.index()) != 0
    }

    /// Adds `scope`; false if it was already there.
    pub fn insert(&mut self, scope: Scope) -> bool {
        let had = self.contains(scope);
        self.0 |= 1 << scope.index();
        !had
    }

    /// Whether no scope is granted.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The granted scopes, in [`Scope::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// The stored form: names joined by commas (`read,order`).
    pub fn to_text(self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(",")
    }

    /// The set of a stored form; unknown names are an error (a row written by a newer release).
    pub fn from_text(text: &str) -> Result<Self, String> {
        text.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| Scope::parse(s).ok_or_else(|| format!("unknown scope {s:?}")))
            .collect()
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut set = Self::default();
        for scope in iter {
            set.insert(scope);
        }
        set
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

use Scope::{Admin, Order, Read};

/// Every public method (`/package.Service/Method`) and the scope it requires.
pub const METHOD_SCOPES: &[(&str, Scope)] = &[
    // esim.catalog.v1.CatalogService
    ("/esim.catalog.v1.CatalogService/ListCountries", Read),
    ("/esim.catalog.v1.CatalogService/ListProducts", Read),
    ("/esim.catalog.v1.CatalogService/GetProduct", Read),
    ("/esim.catalog.v1.CatalogService/SyncCatalog", Admin),
    ("/esim.catalog.v1.CatalogService/GetSyncRun", Read),
    ("/esim.catalog.v1.CatalogService/ListSyncRuns", Read),
    // SFT plans are the reseller's wholesale terms; the proto marks all five methods admin.
    ("/esim.catalog.v1.CatalogService/CreateSftPlan", Admin),
    ("/esim.catalog.v1.CatalogService/GetSftPlan", Admin),
    ("/esim.catalog.v1.CatalogService/ListSftPlans", Admin),
    ("/esim.catalog.v1.CatalogService/UpdateSftPlan", Admin),
    ("/esim.catalog.v1.CatalogService/DeleteSftPlan", Admin),
    ("/esim.catalog.v1.CatalogService/GetPricingRule", Read),
    ("/esim.catalog.v1.CatalogService/UpdatePricingRule", Admin),
    // esim.ordering.v1.OrderingService
    ("/esim.ordering.v1.OrderingService/CreateOrder", Order),
    ("/esim.ordering.v1.OrderingService/GetOrder", Read),
    ("/esim.ordering.v1.OrderingService/ListOrders", Read),
    ("/esim.ordering.v1.OrderingService/WatchOrder", Read),
    ("/esim.ordering.v1.OrderingService/ListOrderEvents", Read),
    ("/esim.ordering.v1.OrderingService/CancelOrder", Order),
    ("/esim.ordering.v1.OrderingService/ReportOrderPayment", Order),
    ("/esim.ordering.v1.OrderingService/TopUpOrder", Order),
    // The shop keeps its customers' FMS accounts in step when they change their password.
    ("/esim.ordering.v1.OrderingService/SyncCustomerPassword", Order),
    // esim.provisioning.v1.ProvisioningService
    // CreateEsim and ProvisionEsim are steps of ordering's purchase saga, which calls them
    // directly; through the gateway only an operator repairing an order takes them.
    ("/esim.provisioning.v1.ProvisioningService/CreateEsim", Admin),
    ("/esim.provisioning.v1.ProvisioningService/ProvisionEsim", Admin),
    ("/esim.provisioning.v1.ProvisioningService/GetEsim", Read),
    ("/esim.provisioning.v1.ProvisioningService/ListEsims", Read),
    ("/esim.provisioning.v1.ProvisioningService/ActivateEsim", Order),
    ("/esim.provisioning.v1.ProvisioningService/SuspendEsim", Order),
    ("/esim.provisioning.v1.ProvisioningService/ResumeEsim", Order),
    ("/esim.provisioning.v1.ProvisioningService/TerminateEsim", Order),
    ("/esim.provisioning.v1.ProvisioningService/DeliverEsim", Order),
    // Another add-on on an eSIM: a top-up.
    ("/esim.provisioning.v1.ProvisioningService/CreateAddon", Order),
    ("/esim.provisioning.v1.ProvisioningService/GetAddon", Read),
    ("/esim.provisioning.v1.ProvisioningService/ListAddons", Read),
    // esim.usage.v1.UsageService
    // Ordering starts tracking once an order is ACTIVE; through the gateway it is a repair.
    ("/esim.usage.v1.UsageService/StartUsageTracking", Admin),
    ("/esim.usage.v1.UsageService/GetUsage", Read),
    ("/esim.usage.v1.UsageService/ListDailyUsage", Read),
    ("/esim.usage.v1.UsageService/ListAlerts", Read),
    ("/esim.usage.v1.UsageService/WatchAlerts", Read),
    ("/esim.usage.v1.UsageService/RegisterMpAlarmCallback", Admin),
    // esim.gateway.v1.GatewayService: every method needs ADMIN.
    ("/esim.gateway.v1.GatewayService/CreateApiKey", Admin),
    ("/esim.gateway.v1.GatewayService/GetApiKey", Admin),
    ("/esim.gateway.v1.GatewayService/ListApiKeys", Admin),
    ("/esim.gateway.v1.GatewayService/UpdateApiKey", Admin),
    ("/esim.gateway.v1.GatewayService/RevokeApiKey", Admin),
];

static BY_PATH: LazyLock<HashMap<&'static str, Scope>> =
    LazyLock::new(|| METHOD_SCOPES.iter().copied().collect());

/// The scope the method at `path` (`/package.Service/Method`) requires; `None` for a method the
/// table does not know, which nobody may call.
pub fn required_scope(path: &str) -> Option<Scope> {
    BY_PATH.get(path).copied()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prost::Message;

    use super::*;

    /// The services whose every method the gateway serves.
    const SERVICES: [&str; 5] = [
        "esim.catalog.v1.CatalogService",
        "esim.ordering.v1.OrderingService",
        "esim.provisioning.v1.ProvisioningService",
        "esim.usage.v1.UsageService",
        "esim.gateway.v1.GatewayService",
    ];

    fn described_methods() -> BTreeSet<String> {
        let set = prost_types::FileDescriptorSet::decode(esim_proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut methods = BTreeSet::new();
        for file in &set.file {
            for service in &file.service {
                let full = format!("{}.{}", file.package(), service.name());
                if SERVICES.contains(&full.as_str()) {
                    for method in &service.method {
                        methods.insert(format!("/{full}/{}", method.name()));
                    }
                }
            }
        }
        methods
    }

    #[test]
    fn every_method_of_the_five_apis_has_exactly_one_scope() {
        let described = described_methods();
        let services_seen: BTreeSet<&str> = described
            .iter()
            .filter_map(|m| m.trim_start_matches('/').split('/').next())
            .collect();
        assert_eq!(
            services_seen.len(),
            SERVICES.len(),
            "a service is missing from the descriptors"
        );
        let unclassified: Vec<&String> = described.iter().filter(|m| required_scope(m).is_none()).collect();
        assert!(
            unclassified.is_empty(),
            "methods without a required scope (add them to METHOD_SCOPES): {unclassified:?}"
        );
        let tabled: BTreeSet<String> = METHOD_SCOPES.iter().map(|(m, _)| (*m).to_owned()).collect();
        assert_eq!(tabled.len(), METHOD_SCOPES.len(), "a method is listed twice");
        let stale: Vec<&String> = tabled.difference(&described).collect();
        assert!(
            stale.is_empty(),
            "table entries for methods that do not exist: {stale:?}"
        );
    }

    #[test]
    fn unknown_methods_need_a_scope_nobody_has() {
        assert_eq!(
            required_scope("/esim.catalog.v1.CatalogService/DropEverything"),
            None
        );
        assert_eq!(
            required_scope("/esim.catalog.v1.CatalogService/ListProducts"),
            Some(Read)
        );
        assert_eq!(
            required_scope("/esim.gateway.v1.GatewayService/CreateApiKey"),
            Some(Admin)
        );
    }

    #[test]
    fn scope_sets_round_trip_their_stored_form() {
        let set: ScopeSet = [Order, Read].into_iter().collect();
        assert_eq!(set.to_text(), "read,order");
        assert_eq!(ScopeSet::from_text("read,order").unwrap(), set);
        assert!(set.contains(Read) && set.contains(Order) && !set.contains(Admin));
        assert_eq!(ScopeSet::from_text("").unwrap(), ScopeSet::default());
        assert!(ScopeSet::from_text("read,root").is_err());
        assert_eq!(ScopeSet::all().to_text(), "read,order,admin");
        for scope in Scope::ALL {
            assert_eq!(Scope::from_proto(scope.to_proto() as i32), Some(scope));
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(Scope::from_proto(0), None);
        assert_eq!(Scope::from_proto(42), None);
    }
}

//! Where products come from: one [`CatalogSource`] per provider, each turning its upstream's
//! own records into normalised [`SourceProduct`]s. The sync only sees this seam, so tests can
//! put any source behind it.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use esim_domain::{CountryCode, Money};

pub mod fms;
pub mod mp;
pub mod sft;

/// An upstream provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    /// LinksField Marketing Place.
    Mp,
    /// LinksField eSIM QR Mall.
    Fms,
    /// BICS SIM for Things.
    Sft,
}

impl Provider {
    /// Every provider, in sync order.
    pub const ALL: [Provider; 3] = [Provider::Mp, Provider::Fms, Provider::Sft];

    /// The stored form (`MP`, `FMS`, `SFT`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mp => "MP",
            Self::Fms => "FMS",
            Self::Sft => "SFT",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Lower case, as in `pricingRules/mp` and product ids.
    pub fn lower(self) -> &'static str {
        match self {
            Self::Mp => "mp",
            Self::Fms => "fms",
            Self::Sft => "sft",
        }
    }

    /// The API enum.
    pub fn to_proto(self) -> esim_proto::r#type::v1::Provider {
        use esim_proto::r#type::v1::Provider as P;
        match self {
            Self::Mp => P::Mp,
            Self::Fms => P::Fms,
            Self::Sft => P::Sft,
        }
    }

    /// From the API enum; `None` for UNSPECIFIED (or an unknown value).
    pub fn from_proto(value: i32) -> Option<Self> {
        use esim_proto::r#type::v1::Provider as P;
        match P::try_from(value).ok()? {
            P::Mp => Some(Self::Mp),
            P::Fms => Some(Self::Fms),
            P::Sft => Some(Self::Sft),
            P::Unspecified => None,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The provider's own references of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// MP: goodsId + productId + simGroupCode.
    Mp {
        /// `goodsId`.
        goods_id: i64,
        /// `productId`.
        product_id: i64,
        /// `simGroupCode` (empty when MP sends none).
        sim_group_code: String,
    },
    /// FMS: packageCode + id + currencyId + periodNum.
    Fms {
        /// `packageCode`.
        package_code: String,
        /// Package `id`.
        package_id: i64,
        /// `currencyId` of the price.
        currency_id: i64,
        /// `periodNum` from the detail.
        period_num: i32,
    },
    /// SFT: planId.
    Sft {
        /// `planId`.
        plan_id: String,
    },
}

impl Reference {
    /// The provider these references belong to.
    pub fn provider(&self) -> Provider {
        match self {
            Self::Mp { .. } => Provider::Mp,
            Self::Fms { .. } => Provider::Fms,
            Self::Sft { .. } => Provider::Sft,
        }
    }

    /// The stable product id derived from the references: 1-63 characters of `[a-z0-9-]`.
    /// MP: `mp-{goodsId}-{productId}`; FMS: `fms-{id}`; SFT: `sft-{planId}` lower-cased, with a
    /// hash suffix when lower-casing or shortening could make two plan ids collide.
    pub fn product_id(&self) -> String {
        match self {
            Self::Mp {
                goods_id, product_id, ..
            } => format!("mp-{goods_id}-{product_id}"),
            Self::Fms { package_id, .. } => format!("fms-{package_id}"),
            Self::Sft { plan_id } => {
                let clean: String = plan_id
                    .chars()
                    .map(|c| match c {
                        'a'..='z' | '0'..='9' | '-' => c,
                        'A'..='Z' => c.to_ascii_lowercase(),
                        _ => '-',
                    })
                    .collect();
                if clean == *plan_id && clean.len() <= 59 {
                    format!("sft-{clean}")
                } else {
                    let head: String = clean.chars().take(49).collect();
                    format!("sft-{head}-{:08x}", fnv1a32(plan_id.as_bytes()))
                }
            }
        }
    }
}

/// FNV-1a, 32 bits: a hash that never changes between builds (ids derived from it are stored).
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// FNV-1a, 64 bits (page-token query fingerprints, request hashes).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Data volume per cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volume {
    /// Capped, in bytes.
    Bytes(u64),
    /// No cap.
    Unlimited,
}

/// Bytes in a megabyte as the upstreams (and `esim-upstream`) count them: 1024 × 1024.
pub const BYTES_PER_MB: u64 = 1024 * 1024;

impl Volume {
    /// "5 GB", "500 MB", "1.5 GB", "Unlimited".
    pub fn label(self) -> String {
        const GB: u64 = 1024 * BYTES_PER_MB;
        match self {
            Self::Unlimited => "Unlimited".into(),
            Self::Bytes(b) if b >= GB && (u128::from(b) * 10) % u128::from(GB) == 0 => {
                let tenths = u128::from(b) * 10 / u128::from(GB);
                if tenths % 10 == 0 {
                    format!("{} GB", tenths / 10)
                } else {
                    format!("{}.{} GB", tenths / 10, tenths % 10)
                }
            }
            Self::Bytes(b) if b % BYTES_PER_MB == 0 => format!("{} MB", b / BYTES_PER_MB),
            Self::Bytes(b) => format!("{b} bytes"),
        }
    }
}

/// One plan as a source sees it, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceProduct {
    /// The provider's references (and so the product id).
    pub reference: Reference,
    /// The upstream's own name, verbatim.
    pub upstream_name: String,
    /// Name shown to travellers (at most 200 characters).
    pub display_name: String,
    /// Data per cycle.
    pub volume: Volume,
    /// Validity of one cycle in days (at least 1).
    pub validity_days: u32,
    /// Countries covered (never empty).
    pub coverage: BTreeSet<CountryCode>,
    /// Allowed cycle counts, ascending (never empty).
    pub cycle_counts: Vec<u32>,
    /// Wholesale price of one cycle.
    pub wholesale: Money,
}

/// What one fetch returned: the valid products, and why the others were skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceBatch {
    /// Valid products.
    pub products: Vec<SourceProduct>,
    /// One line per skipped upstream record.
    pub skipped: Vec<String>,
}

/// Why a whole fetch failed (the provider keeps its last good catalogue). Never holds
/// credentials: upstream errors carry call names, codes and short body excerpts only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// One provider's catalogue.
#[async_trait::async_trait]
pub trait CatalogSource: Send + Sync + fmt::Debug {
    /// Which provider this is.
    fn provider(&self) -> Provider;

    /// Fetches the provider's whole current catalogue.
    async fn fetch(&self, request_id: &str) -> Result<SourceBatch, SourceError>;
}

/// The sources a catalog syncs from.
pub type Sources = Vec<Arc<dyn CatalogSource>>;

/// "Japan 5 GB / 7 days", or "3 countries ..." for several countries.
pub fn display_name(coverage: &BTreeSet<CountryCode>, volume: Volume, days: u32) -> String {
    let place = match coverage.iter().next() {
        Some(only) if coverage.len() == 1 => crate::mcc::table().country_name(*only),
        _ => format!("{} countries", coverage.len()),
    };
    let days = if days == 1 {
        "1 day".to_owned()
    } else {
        format!("{days} days")
    };
    let name = format!("{place} {} / {days}", volume.label());
    name.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_ids_are_stable_and_valid() {
        let mp = Reference::Mp {
            goods_id: 35,
            product_id: 5,
            sim_group_code: "X".into(),
        };
        assert_eq!(mp.product_id(), "mp-35-5");
        let fms = Reference::Fms {
            package_code: "LP1".into(),
            package_id: 1000000,
            currency_id: 2,
            period_num: 1,
        };
        assert_eq!(fms.product_id(), "fms-1000000");
        let sft = |p: &str| Reference::Sft { plan_id: p.into() }.product_id();
        assert_eq!(sft("plan-1"), "sft-plan-1");
        // Ids that lower-casing would merge stay distinct.
        assert_ne!(sft("Plan_A"), sft("plan-a"));
        assert_ne!(sft("Plan_A"), sft("PLAN_A"));
        let long = sft(&"A".repeat(63));
        assert!(long.len() <= 63, "{long}");
        for id in [sft("Plan_A"), long, sft("x")] {
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            );
        }
    }

    #[test]
    fn labels() {
        assert_eq!(Volume::Bytes(5 * 1024 * BYTES_PER_MB).label(), "5 GB");
        assert_eq!(Volume::Bytes(500 * BYTES_PER_MB).label(), "500 MB");
        assert_eq!(Volume::Bytes(1536 * BYTES_PER_MB).label(), "1.5 GB");
        assert_eq!(Volume::Unlimited.label(), "Unlimited");
        let jp: BTreeSet<CountryCode> = ["JP".parse().unwrap()].into();
        assert_eq!(
            display_name(&jp, Volume::Bytes(5 * 1024 * BYTES_PER_MB), 7),
            "Japan 5 GB / 7 days"
        );
    }
}

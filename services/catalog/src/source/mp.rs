//! MP (`v2/productList`). MP lists coverage (an MCC), ids and allowed cycle counts, but no
//! price, volume or validity: those are the reseller's contract terms. The volume and validity
//! are read from the product name ("1GB/7days", as MP names its specifications) unless the
//! operator's terms file gives them; the wholesale price always comes from the terms file
//! (`CATALOG_CONFIG_FILE`, `mp_products`). A product without terms is skipped, with the reason.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use esim_domain::{CountryCode, Money};
use esim_upstream::mp::MpClient;
use serde::Deserialize;

use super::{
    BYTES_PER_MB, CatalogSource, Provider, Reference, SourceBatch, SourceError, SourceProduct, Volume,
    display_name,
};

/// The reseller's terms for one MP product.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MpTerms {
    /// MP `productId`.
    pub product_id: i64,
    /// Wholesale price per cycle, decimal text (`"4.50"`).
    pub wholesale_price: String,
    /// ISO 4217 currency (`"USD"`).
    pub currency: String,
    /// Data per cycle in MB (1 MB = 1024 × 1024 bytes), when the name does not say.
    #[serde(default)]
    pub data_mb: Option<u64>,
    /// True for an uncapped plan.
    #[serde(default)]
    pub unlimited: Option<bool>,
    /// Validity per cycle in days, when the name does not say.
    #[serde(default)]
    pub validity_days: Option<u32>,
}

/// The MP source.
#[derive(Debug)]
pub struct MpSource {
    client: Arc<MpClient>,
    terms: HashMap<i64, MpTerms>,
}

impl MpSource {
    /// A source over `client` with the operator's `terms`.
    pub fn new(client: Arc<MpClient>, terms: Vec<MpTerms>) -> Self {
        Self {
            client,
            terms: terms.into_iter().map(|t| (t.product_id, t)).collect(),
        }
    }
}

#[async_trait::async_trait]
impl CatalogSource for MpSource {
    fn provider(&self) -> Provider {
        Provider::Mp
    }

    async fn fetch(&self, request_id: &str) -> Result<SourceBatch, SourceError> {
        let rows = self
            .client
            .product_list(request_id)
            .await
            .map_err(|e| SourceError(e.to_string()))?;
        let mut batch = SourceBatch::default();
        for row in rows {
            match normalise(&row, self.terms.get(&row.product_id)) {
                Ok(p) => batch.products.push(p),
                Err(why) => batch.skipped.push(format!("productId {}: {why}", row.product_id)),
            }
        }
        Ok(batch)
    }
}

/// One `productList` row with its terms → a product, or why not.
pub fn normalise(row: &esim_upstream::mp::Product, terms: Option<&MpTerms>) -> Result<SourceProduct, String> {
    let mcc = row.cover_mcc.ok_or("coverCountry (MCC) is missing")?;
    let coverage: BTreeSet<CountryCode> = crate::mcc::table().countries(mcc).iter().copied().collect();
    if coverage.is_empty() {
        return Err(format!("MCC {mcc} names no country"));
    }
    let terms = terms.ok_or("no wholesale price configured (CATALOG_CONFIG_FILE mp_products)")?;
    let wholesale = Money::parse_amount(&terms.wholesale_price, &terms.currency)
        .map_err(|e| format!("configured price: {e}"))?;
    if wholesale.amount().is_sign_negative() {
        return Err("configured price is negative".into());
    }
    let upstream_name = row.product_name.clone().unwrap_or_default();
    let (name_volume, name_days) = parse_name(&upstream_name);
    let volume = match (terms.unlimited, terms.data_mb) {
        (Some(true), _) => Some(Volume::Unlimited),
        (_, Some(mb)) => Some(Volume::Bytes(mb.saturating_mul(BYTES_PER_MB))),
        _ => name_volume,
    }
    .ok_or_else(|| format!("no data volume in the name {upstream_name:?} nor in the terms"))?;
    let validity_days = terms
        .validity_days
        .or(name_days)
        .filter(|d| *d >= 1)
        .ok_or_else(|| format!("no validity in the name {upstream_name:?} nor in the terms"))?;
    let mut cycle_counts = row.allowed_cycle_counts.clone();
    cycle_counts.retain(|c| *c >= 1);
    cycle_counts.sort_unstable();
    cycle_counts.dedup();
    if cycle_counts.is_empty() {
        // MP orders the product's minimum when no count is sent; a product without counts
        // sells one cycle.
        cycle_counts.push(1);
    }
    Ok(SourceProduct {
        reference: Reference::Mp {
            goods_id: row.goods_id,
            product_id: row.product_id,
            sim_group_code: row.sim_group_code.clone().unwrap_or_default(),
        },
        display_name: display_name(&coverage, volume, validity_days),
        upstream_name,
        volume,
        validity_days,
        coverage,
        cycle_counts,
        wholesale,
    })
}

/// Reads "1GB/7days", "CN 500MB 1 day", "Unlimited/30 Days": the first amount followed by
/// MB/GB/TB, the first number followed by "day", and the word "unlimited".
pub fn parse_name(name: &str) -> (Option<Volume>, Option<u32>) {
    let lower = name.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut volume = lower.contains("unlimited").then_some(Volume::Unlimited);
    let mut days = None;
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && bytes[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let number = &lower[start..i];
        let rest = lower[i..].trim_start();
        let unit_mb = if rest.starts_with("tb") {
            Some(1024 * 1024)
        } else if rest.starts_with("gb") || rest.starts_with("g ") || rest == "g" {
            Some(1024)
        } else if rest.starts_with("mb") {
            Some(1)
        } else {
            None
        };
        if let Some(mb) = unit_mb {
            if volume.is_none()
                && let Ok(n) = number.parse::<rust_decimal::Decimal>()
            {
                let total = n * rust_decimal::Decimal::from(mb * BYTES_PER_MB);
                volume = u64::try_from(total.floor()).ok().map(Volume::Bytes);
            }
        } else if (rest.starts_with("day") || (rest.starts_with('d') && !rest.starts_with("da")))
            && days.is_none()
        {
            days = number.parse().ok();
        }
    }
    (volume, days)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1024 * BYTES_PER_MB;

    #[test]
    fn names() {
        assert_eq!(parse_name("1GB/7days"), (Some(Volume::Bytes(GB)), Some(7)));
        assert_eq!(
            parse_name("CN 3GB/15days"),
            (Some(Volume::Bytes(3 * GB)), Some(15))
        );
        assert_eq!(
            parse_name("500MB 1 Day"),
            (Some(Volume::Bytes(500 * BYTES_PER_MB)), Some(1))
        );
        assert_eq!(
            parse_name("1.5 GB 30d"),
            (Some(Volume::Bytes(3 * GB / 2)), Some(30))
        );
        assert_eq!(
            parse_name("Unlimited/30 Days"),
            (Some(Volume::Unlimited), Some(30))
        );
        assert_eq!(parse_name("Test QR product"), (None, None));
        assert_eq!(parse_name("testtest"), (None, None));
        // Digits inside words ("5G network") are not volumes.
        assert_eq!(parse_name("LTE5G 2GB"), (Some(Volume::Bytes(2 * GB)), None));
    }

    fn row(mcc: &str, name: &str, qty: Vec<u32>) -> esim_upstream::mp::Product {
        esim_upstream::mp::Product {
            goods_id: 37,
            goods_name: Some("CHINA_Test".into()),
            product_id: 6,
            product_name: Some(name.into()),
            allowed_cycle_counts: qty,
            sim_group_code: Some("SIMGROUP1706570409388478464".into()),
            sim_group_name: None,
            cover_mcc: Some(mcc.parse().unwrap()),
            cover_country_name: Some("China".into()),
        }
    }

    fn terms() -> MpTerms {
        MpTerms {
            product_id: 6,
            wholesale_price: "3.20".into(),
            currency: "USD".into(),
            data_mb: None,
            unlimited: None,
            validity_days: None,
        }
    }

    #[test]
    fn seed_product_normalises() {
        // The seed's second product: "1GB/7days", orderQuantity "3,4", coverCountry 460.
        let p = normalise(&row("460", "1GB/7days", vec![4, 3]), Some(&terms())).unwrap();
        assert_eq!(p.coverage.iter().map(|c| c.as_str()).collect::<Vec<_>>(), ["CN"]);
        assert_eq!(p.volume, Volume::Bytes(GB));
        assert_eq!(p.validity_days, 7);
        assert_eq!(p.cycle_counts, [3, 4]);
        assert_eq!(p.wholesale.to_string(), "3.20 USD");
        assert_eq!(p.display_name, "China 1 GB / 7 days");
        assert_eq!(p.reference.product_id(), "mp-37-6");
    }

    #[test]
    fn skips_with_reasons() {
        assert!(
            normalise(&row("460", "1GB/7days", vec![1]), None)
                .unwrap_err()
                .contains("price")
        );
        assert!(
            normalise(&row("901", "1GB/7days", vec![1]), Some(&terms()))
                .unwrap_err()
                .contains("901")
        );
        assert!(
            normalise(&row("460", "Test QR product", vec![1]), Some(&terms()))
                .unwrap_err()
                .contains("volume")
        );
        let mut t = terms();
        t.data_mb = Some(2048);
        t.validity_days = Some(10);
        let p = normalise(&row("460", "Test QR product", vec![]), Some(&t)).unwrap();
        assert_eq!(p.volume, Volume::Bytes(2 * GB));
        assert_eq!(p.cycle_counts, [1]);
    }
}

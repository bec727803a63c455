//! The seeded catalogue: countries (by MCC), MP products and FMS packages.

use crate::ids::Rng;

/// A country the sandbox sells in.
#[derive(Debug, Clone)]
pub struct Country {
    /// Mobile country code, e.g. "460".
    pub mcc: &'static str,
    /// ISO 3166-1 alpha-2 code.
    pub iso2: &'static str,
    /// English name.
    pub name: &'static str,
}

/// The twelve countries of the catalogue.
pub const COUNTRIES: &[Country] = &[
    Country {
        mcc: "460",
        iso2: "CN",
        name: "China",
    },
    Country {
        mcc: "440",
        iso2: "JP",
        name: "Japan",
    },
    Country {
        mcc: "310",
        iso2: "US",
        name: "United States",
    },
    Country {
        mcc: "234",
        iso2: "GB",
        name: "United Kingdom",
    },
    Country {
        mcc: "208",
        iso2: "FR",
        name: "France",
    },
    Country {
        mcc: "262",
        iso2: "DE",
        name: "Germany",
    },
    Country {
        mcc: "214",
        iso2: "ES",
        name: "Spain",
    },
    Country {
        mcc: "222",
        iso2: "IT",
        name: "Italy",
    },
    Country {
        mcc: "520",
        iso2: "TH",
        name: "Thailand",
    },
    Country {
        mcc: "502",
        iso2: "MY",
        name: "Malaysia",
    },
    Country {
        mcc: "525",
        iso2: "SG",
        name: "Singapore",
    },
    Country {
        mcc: "454",
        iso2: "HK",
        name: "Hong Kong",
    },
];

/// An MP product (a spec within a "goods" = country coverage).
#[derive(Debug, Clone)]
pub struct MpProduct {
    /// `goodsId`.
    pub goods_id: u64,
    /// `goodsName`.
    pub goods_name: String,
    /// `productId`.
    pub product_id: u64,
    /// `orderQuantity`: allowed cycle counts, e.g. "1" or "3,4".
    pub order_quantity: String,
    /// `productName`, e.g. "1GB/7days".
    pub product_name: String,
    /// `simGroupCode`.
    pub sim_group_code: String,
    /// `simGroupName`.
    pub sim_group_name: String,
    /// `coverCountry` (MCC).
    pub cover_country: String,
    /// `coverCountryName`.
    pub cover_country_name: String,
    /// The package code orders of this product carry.
    pub package_code: String,
    /// Data per cycle, MB.
    pub data_mb: u64,
    /// Validity per cycle, days.
    pub days: u64,
}

impl MpProduct {
    /// The allowed cycle counts.
    pub fn allowed_cycles(&self) -> Vec<u32> {
        self.order_quantity
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    }
}

/// An FMS package.
#[derive(Debug, Clone)]
pub struct FmsPackage {
    /// Package id (`id`).
    pub id: u64,
    /// `packageCode`.
    pub package_code: String,
    /// `packageName`.
    pub package_name: String,
    /// MCC of the country it is listed under.
    pub mcc: String,
    /// Countries (MCC) it covers.
    pub coverage: Vec<String>,
    /// Data volume in MB (0 = unlimited).
    pub flow_mb: u64,
    /// Validity in days.
    pub days: u64,
    /// Price in cents of `currency`.
    pub price_cents: u64,
    /// Currency abbreviation.
    pub currency: String,
    /// Currency id (FMS: 2 = USD).
    pub currency_id: u64,
    /// `periodNum`: the number of periods the package is sold for.
    pub period_num: u64,
}

/// The whole catalogue.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// MP products.
    pub mp: Vec<MpProduct>,
    /// FMS packages.
    pub fms: Vec<FmsPackage>,
}

impl Catalog {
    /// Builds the catalogue deterministically from `rng`.
    pub fn generate(rng: &mut Rng) -> Self {
        // (name, data MB, days, allowed cycles)
        const MP_SPECS: &[(&str, u64, u64, &str)] = &[
            ("1GB/7days", 1024, 7, "1"),
            ("3GB/15days", 3072, 15, "1,2"),
            ("5GB/30days", 5120, 30, "3,4"),
        ];
        // (label, data MB, days, price cents)
        const FMS_SPECS: &[(&str, u64, u64, u64)] = &[
            ("500MB 1 Day", 500, 1, 199),
            ("1GB 7 Days", 1024, 7, 500),
            ("3GB 15 Days", 3072, 15, 1200),
            ("10GB 30 Days", 10240, 30, 2900),
        ];
        let mut mp = Vec::new();
        let mut fms = Vec::new();
        let mut product_id = 1;
        let mut package_id = 1_000_000;
        for (ci, c) in COUNTRIES.iter().enumerate() {
            let goods_id = 30 + ci as u64;
            let group_code = format!("SIMGROUP{}", rng.digits(19));
            for (name, mb, days, qty) in MP_SPECS {
                mp.push(MpProduct {
                    goods_id,
                    goods_name: format!("{} countryCoverage", c.name),
                    product_id,
                    order_quantity: (*qty).into(),
                    product_name: format!("{} {name}", c.iso2),
                    sim_group_code: group_code.clone(),
                    sim_group_name: format!("{} eSIM group", c.name),
                    cover_country: c.mcc.into(),
                    cover_country_name: c.name.into(),
                    package_code: format!("LP14{}", rng.digits(12)),
                    data_mb: *mb,
                    days: *days,
                });
                product_id += 1;
            }
            for (label, mb, days, cents) in FMS_SPECS {
                // +-10% deterministic price jitter, rounded to cents.
                let jitter = 90 + rng.below(21);
                fms.push(FmsPackage {
                    id: package_id,
                    package_code: format!("LP2022{}", rng.digits(10)),
                    package_name: format!("{} {label}", c.name),
                    mcc: c.mcc.into(),
                    coverage: vec![c.mcc.into()],
                    flow_mb: *mb,
                    days: *days,
                    price_cents: cents * jitter / 100,
                    currency: "USD".into(),
                    currency_id: 2,
                    period_num: 1,
                });
                package_id += 1;
            }
        }
        // One regional package listed under several Asian countries.
        let asia = ["460", "440", "520", "502", "525", "454"];
        fms.push(FmsPackage {
            id: package_id,
            package_code: format!("LP2022{}", rng.digits(10)),
            package_name: "Asia 6 countries 5GB 15 Days".into(),
            mcc: "460".into(),
            coverage: asia.iter().map(|s| (*s).to_owned()).collect(),
            flow_mb: 5120,
            days: 15,
            price_cents: 1500,
            currency: "USD".into(),
            currency_id: 2,
            period_num: 1,
        });
        Self { mp, fms }
    }

    /// The country with this MCC.
    pub fn country(mcc: &str) -> Option<&'static Country> {
        COUNTRIES.iter().find(|c| c.mcc == mcc)
    }
}

//! MCC (ITU-T E.212 mobile country code) ↔ ISO 3166-1 alpha-2 country, from the vendored
//! `data/mcc-mnc.tsv` (npm `mcc-mnc-list`; see `data/README.md`). Built once, on first use.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::LazyLock;

use esim_domain::{CountryCode, Mcc};

const DATA: &str = include_str!("../data/mcc-mnc.tsv");

/// The derived tables.
#[derive(Debug)]
pub struct MccTable {
    by_mcc: HashMap<Mcc, Vec<CountryCode>>,
    by_country: HashMap<CountryCode, Vec<Mcc>>,
    names: HashMap<CountryCode, String>,
}

static TABLE: LazyLock<MccTable> = LazyLock::new(|| MccTable::parse(DATA));

/// The table built from the vendored data.
pub fn table() -> &'static MccTable {
    &TABLE
}

impl MccTable {
    /// Parses `mcc<TAB>mnc<TAB>country_code<TAB>country_name` lines (`#` comments).
    pub fn parse(text: &str) -> Self {
        // Per MCC, how many networks each country entry has: the MCC belongs to the entry most
        // networks are listed under (a few US-MCC rows name Guam or Puerto Rico).
        let mut votes: BTreeMap<Mcc, BTreeMap<&str, usize>> = BTreeMap::new();
        let mut name_votes: HashMap<CountryCode, BTreeMap<&str, usize>> = HashMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let mut cols = line.split('\t');
            let (Some(mcc), _, Some(entry)) = (cols.next(), cols.next(), cols.next()) else {
                continue;
            };
            let name = cols.next().unwrap_or_default().trim();
            let Ok(mcc) = mcc.parse::<Mcc>() else { continue };
            if entry.trim().is_empty() {
                continue; // international / shared codes (001, 901, ...) name no country
            }
            *votes.entry(mcc).or_default().entry(entry.trim()).or_default() += 1;
            if let Ok(code) = entry.trim().parse::<CountryCode>()
                && !name.is_empty()
            {
                *name_votes.entry(code).or_default().entry(name).or_default() += 1;
            }
        }
        let mut by_mcc = HashMap::new();
        let mut by_country: HashMap<CountryCode, BTreeSet<Mcc>> = HashMap::new();
        for (mcc, entries) in votes {
            // Highest count wins; ties go to the alphabetically first entry, so the result
            // never depends on row order.
            let Some((entry, _)) = entries
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
            else {
                continue;
            };
            // "AU/CC/CX": one MCC for several territories. Sub-national codes ("GE-AB") and
            // anything not ISO 3166-1 are left out.
            let codes: Vec<CountryCode> = entry
                .split('/')
                .filter_map(|c| c.trim().parse::<CountryCode>().ok())
                .collect();
            if codes.is_empty() {
                continue;
            }
            for code in &codes {
                by_country.entry(*code).or_default().insert(mcc);
            }
            by_mcc.insert(mcc, codes);
        }
        let names = name_votes
            .into_iter()
            .filter_map(|(code, names)| {
                let best = names
                    .iter()
                    .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))?;
                Some((code, (*best.0).to_owned()))
            })
            .collect();
        Self {
            by_mcc,
            by_country: by_country
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().collect()))
                .collect(),
            names,
        }
    }

    /// The countries an MCC belongs to (usually one); empty when the MCC names none.
    pub fn countries(&self, mcc: Mcc) -> &[CountryCode] {
        self.by_mcc.get(&mcc).map(Vec::as_slice).unwrap_or_default()
    }

    /// The MCCs of a country, ascending (`JP` → 440, 441).
    pub fn mccs(&self, country: CountryCode) -> &[Mcc] {
        self.by_country
            .get(&country)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// English short name of a country ("United Kingdom"), falling back to the ISO name.
    pub fn country_name(&self, country: CountryCode) -> String {
        self.names
            .get(&country)
            .cloned()
            .unwrap_or_else(|| country.name().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(s: &str) -> CountryCode {
        s.parse().unwrap()
    }
    fn mcc(s: &str) -> Mcc {
        s.parse().unwrap()
    }

    #[test]
    fn maps_the_well_known_codes() {
        let t = table();
        for (m, c) in [
            ("460", "CN"),
            ("440", "JP"),
            ("441", "JP"),
            ("310", "US"),
            ("311", "US"),
            ("234", "GB"),
            ("235", "GB"),
            ("208", "FR"),
            ("262", "DE"),
            ("454", "HK"),
            ("520", "TH"),
            ("502", "MY"),
            ("525", "SG"),
            ("270", "LU"),
            ("255", "UA"),
        ] {
            assert_eq!(t.countries(mcc(m)), &[cc(c)], "{m}");
        }
        assert_eq!(t.mccs(cc("JP")), &[mcc("440"), mcc("441")]);
        assert!(t.mccs(cc("US")).contains(&mcc("316")) || t.mccs(cc("US")).contains(&mcc("312")));
        assert_eq!(t.country_name(cc("GB")), "United Kingdom");
        assert_eq!(t.country_name(cc("JP")), "Japan");
    }

    #[test]
    fn shared_and_unknown_codes() {
        let t = table();
        // 505 is Australia with its external territories.
        assert_eq!(t.countries(mcc("505")), &[cc("AU"), cc("CC"), cc("CX")]);
        // International (901) and unassigned codes name no country.
        assert!(t.countries(mcc("901")).is_empty());
        assert!(t.countries(mcc("999")).is_empty());
        assert!(t.countries(mcc("000")).is_empty());
    }

    #[test]
    fn majority_and_ties_do_not_depend_on_order() {
        let a = MccTable::parse("310\t1\tGU\tGuam\n310\t2\tUS\tUSA\n310\t3\tUS\tUSA\n");
        let b = MccTable::parse("310\t3\tUS\tUSA\n310\t2\tUS\tUSA\n310\t1\tGU\tGuam\n");
        assert_eq!(a.countries(mcc("310")), &[cc("US")]);
        assert_eq!(b.countries(mcc("310")), &[cc("US")]);
        let tie = MccTable::parse("999\t1\tFR\tF\n999\t2\tDE\tD\n");
        assert_eq!(tie.countries(mcc("999")), &[cc("DE")]);
    }
}

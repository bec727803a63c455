//! Retail pricing: the operator's rule per provider turns a wholesale price into the price
//! the buyer pays. Pure functions, computed exactly in decimal.

use esim_domain::CurrencyCode;
use rust_decimal::{Decimal, RoundingStrategy};

/// Largest markup, in basis points (+1000 %).
pub const MAX_MARKUP_BASIS_POINTS: i32 = 100_000;

/// One provider's pricing rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    /// Percentage markup in basis points (1250 = +12.50 %), 0..=100000.
    pub markup_basis_points: i32,
    /// Fixed amount added after the percentage, in its currency.
    pub fixed_markup: Option<(Decimal, CurrencyCode)>,
    /// Cents (0..=99) the price is rounded up to end with; `None`: whole cents only.
    pub price_ending_cents: Option<u8>,
}

/// A computed retail price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retail {
    /// The amount, in the wholesale currency.
    pub amount: Decimal,
    /// False when the rule's fixed markup is in another currency and was left out (the sync
    /// reports such products).
    pub fixed_applied: bool,
}

/// `round_up_to_ending(wholesale × (1 + bp/10000) + fixed)`, never below `wholesale`.
pub fn retail(rule: &Rule, wholesale: Decimal, currency: CurrencyCode) -> Retail {
    let factor = Decimal::ONE + Decimal::new(i64::from(rule.markup_basis_points), 4);
    let mut amount = wholesale * factor;
    let mut fixed_applied = true;
    if let Some((fixed, fixed_currency)) = rule.fixed_markup {
        if fixed_currency == currency {
            amount += fixed;
        } else {
            fixed_applied = fixed.is_zero();
        }
    }
    let amount = round_up_to_ending(amount, rule.price_ending_cents).max(wholesale);
    Retail {
        amount: amount.normalize_to_cents(),
        fixed_applied,
    }
}

/// Rounds up to whole cents, then up to the nearest amount whose cents equal `ending`.
pub fn round_up_to_ending(amount: Decimal, ending: Option<u8>) -> Decimal {
    let cents = amount.round_dp_with_strategy(2, RoundingStrategy::ToPositiveInfinity);
    let Some(ending) = ending else { return cents };
    let ending = Decimal::new(i64::from(ending.min(99)), 2);
    let candidate = cents.floor() + ending;
    if candidate >= cents {
        candidate
    } else {
        candidate + Decimal::ONE
    }
}

trait Cents {
    fn normalize_to_cents(self) -> Self;
}

impl Cents for Decimal {
    /// At least two decimals (`5` → `5.00`), more only when the wholesale price had them.
    fn normalize_to_cents(self) -> Self {
        let mut d = self.normalize();
        if d.scale() < 2 {
            d.rescale(2);
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }
    fn usd() -> CurrencyCode {
        "USD".parse().unwrap()
    }

    #[test]
    fn endings_round_up() {
        assert_eq!(round_up_to_ending(d("4.37"), Some(99)), d("4.99"));
        assert_eq!(round_up_to_ending(d("5.00"), Some(99)), d("5.99"));
        assert_eq!(round_up_to_ending(d("4.99"), Some(99)), d("4.99"));
        assert_eq!(round_up_to_ending(d("4.991"), Some(99)), d("5.99"));
        assert_eq!(round_up_to_ending(d("4.50"), Some(0)), d("5.00"));
        assert_eq!(round_up_to_ending(d("4.00"), Some(0)), d("4.00"));
        assert_eq!(round_up_to_ending(d("4.001"), None), d("4.01"));
        assert_eq!(round_up_to_ending(d("4.37"), Some(49)), d("4.49"));
        assert_eq!(round_up_to_ending(d("4.50"), Some(49)), d("5.49"));
    }

    #[test]
    fn markup_then_fixed_then_ending() {
        let rule = Rule {
            markup_basis_points: 1250,
            fixed_markup: Some((d("0.50"), usd())),
            price_ending_cents: Some(99),
        };
        // 4.00 × 1.125 = 4.50, + 0.50 = 5.00 → 5.99
        let r = retail(&rule, d("4.00"), usd());
        assert_eq!(r.amount, d("5.99"));
        assert!(r.fixed_applied);
        assert_eq!(r.amount.to_string(), "5.99");
    }

    #[test]
    fn default_rule_keeps_wholesale() {
        let r = retail(&Rule::default(), d("4.5"), usd());
        assert_eq!(r.amount.to_string(), "4.50");
        let r = retail(&Rule::default(), d("0"), usd());
        assert_eq!(r.amount.to_string(), "0.00");
        // More precise wholesale prices round up to cents, never down.
        let r = retail(&Rule::default(), d("1.2345"), usd());
        assert_eq!(r.amount.to_string(), "1.24");
    }

    #[test]
    fn fixed_markup_in_another_currency_is_left_out() {
        let rule = Rule {
            markup_basis_points: 0,
            fixed_markup: Some((d("1"), "EUR".parse().unwrap())),
            price_ending_cents: None,
        };
        let r = retail(&rule, d("3.10"), usd());
        assert_eq!(r.amount, d("3.10"));
        assert!(!r.fixed_applied);
    }

    #[test]
    fn never_below_wholesale() {
        for (w, bp, end) in [
            ("9.999", 0, None),
            ("0.001", 0, Some(0)),
            ("100", 100_000, Some(5)),
        ] {
            let rule = Rule {
                markup_basis_points: bp,
                fixed_markup: None,
                price_ending_cents: end,
            };
            let r = retail(&rule, d(w), usd());
            assert!(r.amount >= d(w), "{w}: {}", r.amount);
        }
    }
}

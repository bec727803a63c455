use std::fmt;
use std::str::FromStr;

use crate::DomainError;

/// An SGP.22 (§4.1) activation code, as carried in an eSIM QR code:
/// `LPA:1$<SM-DP+ FQDN>$<MatchingID>[$<SM-DP+ OID>[$<ConfirmationCodeRequiredFlag "1">]]`.
///
/// * the format version must be `1`;
/// * the MatchingID may be empty; it holds letters, digits and `-`;
/// * the OID may be empty when the confirmation-code flag follows; it holds digits and `.`;
/// * the flag, when present, is exactly `1`.
///
/// Input without the `LPA:` prefix (`1$...`) is accepted and normalized to carry it.
///
/// **This is a bearer credential**: whoever holds it can download the profile. So:
/// `Debug` prints only the SM-DP+ address (`ActivationCode(LPA:1$rsp.example.net$***)`),
/// there is no `Display`, errors never echo it, and it has no `Serialize` (nothing writes it
/// out by accident — the few places that need the text call [`ActivationCode::expose`]).
/// It implements `Deserialize` (from the LPA string) so upstream responses can carry it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ActivationCode {
    /// The normalized `LPA:1$...` text.
    text: String,
    smdp: (usize, usize),
    matching_id: (usize, usize),
    oid: Option<(usize, usize)>,
    confirmation_code_required: bool,
}

const PREFIX: &str = "LPA:";

impl ActivationCode {
    /// The SM-DP+ address (FQDN).
    pub fn smdp_address(&self) -> &str {
        &self.text[self.smdp.0..self.smdp.1]
    }

    /// The MatchingID (may be empty).
    pub fn matching_id(&self) -> &str {
        &self.text[self.matching_id.0..self.matching_id.1]
    }

    /// The SM-DP+ OID, when present and not empty.
    pub fn oid(&self) -> Option<&str> {
        self.oid.map(|(a, b)| &self.text[a..b]).filter(|s| !s.is_empty())
    }

    /// Whether the end user must enter a confirmation code.
    pub fn confirmation_code_required(&self) -> bool {
        self.confirmation_code_required
    }

    /// The plain `LPA:1$...` text. Only for the places that must hand it to the user
    /// (QR rendering, the delivery response) or to an upstream; never log it.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// Alias of [`ActivationCode::expose`].
    pub fn as_lpa_str(&self) -> &str {
        &self.text
    }
}

fn invalid(msg: impl Into<String>) -> DomainError {
    DomainError::ActivationCode(msg.into())
}

fn valid_fqdn(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl FromStr for ActivationCode {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let body = match t.get(..PREFIX.len()) {
            Some(p) if p.eq_ignore_ascii_case(PREFIX) => &t[PREFIX.len()..],
            _ => t,
        };
        let text = format!("{PREFIX}{body}");
        let parts: Vec<&str> = body.split('$').collect();
        if parts.len() < 3 {
            return Err(invalid("expected `1$<SM-DP+ address>$<MatchingID>` after `LPA:`"));
        }
        if parts.len() > 5 {
            return Err(invalid("too many `$`-separated fields (at most 5)"));
        }
        if parts[0] != "1" {
            return Err(invalid(format!(
                "unsupported format version {:?} (only 1 is defined)",
                parts[0].chars().take(8).collect::<String>()
            )));
        }
        if !valid_fqdn(parts[1]) {
            return Err(invalid("the SM-DP+ address is not a valid FQDN"));
        }
        if !parts[2].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(invalid(
                "the MatchingID holds characters other than letters, digits and `-`",
            ));
        }
        if let Some(oid) = parts.get(3)
            && !oid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        {
            return Err(invalid("the SM-DP+ OID is not a dotted number"));
        }
        let confirmation_code_required = match parts.get(4) {
            None => false,
            Some(&"1") => true,
            Some(_) => {
                return Err(invalid(
                    "the confirmation code required flag, when present, must be `1`",
                ));
            }
        };
        // Offsets into `text`: "LPA:" + "1$" then the fields.
        let mut pos = PREFIX.len() + 2;
        let mut span = |len: usize| {
            let r = (pos, pos + len);
            pos += len + 1;
            r
        };
        let smdp = span(parts[1].len());
        let matching_id = span(parts[2].len());
        let oid = parts.get(3).map(|o| span(o.len()));
        Ok(Self {
            text,
            smdp,
            matching_id,
            oid,
            confirmation_code_required,
        })
    }
}

impl TryFrom<&str> for ActivationCode {
    type Error = DomainError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl TryFrom<String> for ActivationCode {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Debug for ActivationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActivationCode(LPA:1${}$***)", self.smdp_address())
    }
}

impl<'de> serde::Deserialize<'de> for ActivationCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEED: &str = "LPA:1$rsp-0001.linksfield.net$FJW99-WC5AS-CBYC9-WFTOZ";

    #[test]
    fn seed_code() {
        let a: ActivationCode = SEED.parse().unwrap();
        assert_eq!(a.smdp_address(), "rsp-0001.linksfield.net");
        assert_eq!(a.matching_id(), "FJW99-WC5AS-CBYC9-WFTOZ");
        assert_eq!(a.oid(), None);
        assert!(!a.confirmation_code_required());
        assert_eq!(a.expose(), SEED);
        assert_eq!(a.as_lpa_str(), SEED);
    }

    #[test]
    fn debug_is_redacted() {
        let a: ActivationCode = SEED.parse().unwrap();
        let d = format!("{a:?}");
        assert_eq!(d, "ActivationCode(LPA:1$rsp-0001.linksfield.net$***)");
        assert!(!d.contains("FJW99"));
        assert!(!format!("{:?}", Some(a)).contains("FJW99"));
    }

    #[test]
    fn optional_fields() {
        let a: ActivationCode = "LPA:1$smdp.example.com$$1.3.6.1.4.1.31746$1".parse().unwrap();
        assert_eq!(a.matching_id(), "");
        assert_eq!(a.oid(), Some("1.3.6.1.4.1.31746"));
        assert!(a.confirmation_code_required());

        let a: ActivationCode = "LPA:1$smdp.example.com$ABC$$1".parse().unwrap();
        assert_eq!(a.matching_id(), "ABC");
        assert_eq!(a.oid(), None);
        assert!(a.confirmation_code_required());

        let a: ActivationCode = "1$smdp.example.com$ABC$1.2.3".parse().unwrap();
        assert_eq!(a.expose(), "LPA:1$smdp.example.com$ABC$1.2.3");
        assert_eq!(a.oid(), Some("1.2.3"));
        assert!(!a.confirmation_code_required());
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "LPA:",
            "LPA:1$smdp.example.com",
            "LPA:2$smdp.example.com$ABC",
            "LPA:1$$ABC",
            "LPA:1$bad_host!$ABC",
            "LPA:1$smdp.example.com$AB C",
            "LPA:1$smdp.example.com$ABC$x.y",
            "LPA:1$smdp.example.com$ABC$1.2$0",
            "LPA:1$smdp.example.com$ABC$1.2$1$extra",
        ] {
            assert!(bad.parse::<ActivationCode>().is_err(), "{bad}");
        }
        let e = "LPA:1$smdp.example.com$SECRET MATCHING"
            .parse::<ActivationCode>()
            .unwrap_err();
        assert!(!e.to_string().contains("SECRET"));
    }

    proptest! {
        #[test]
        fn never_panics(s in ".*") {
            let _ = s.parse::<ActivationCode>();
        }

        #[test]
        fn never_panics_dollars(s in "(LPA:)?[1$a-z.\\-é]{0,30}") {
            let _ = s.parse::<ActivationCode>();
        }

        #[test]
        fn round_trip(host in "[a-z][a-z0-9]{0,10}(\\.[a-z][a-z0-9]{0,10}){1,3}",
                      mid in "[A-Z0-9-]{0,24}",
                      oid in proptest::option::of("[0-9]{1,3}(\\.[0-9]{1,3}){0,4}"),
                      flag in proptest::bool::ANY) {
            let mut s = format!("LPA:1${host}${mid}");
            if oid.is_some() || flag { s.push('$'); s.push_str(oid.as_deref().unwrap_or("")); }
            if flag { s.push_str("$1"); }
            let a: ActivationCode = s.parse().unwrap();
            prop_assert_eq!(a.smdp_address(), host.as_str());
            prop_assert_eq!(a.matching_id(), mid.as_str());
            prop_assert_eq!(a.oid(), oid.as_deref());
            prop_assert_eq!(a.confirmation_code_required(), flag);
            prop_assert_eq!(a.expose(), s.as_str());
        }
    }
}

//! Deterministic randomness and GSMA identifier generation (ICCID, EID, activation code).

/// A small, fast, deterministic PRNG (SplitMix64). Stable across platforms and crate versions,
/// so a given seed always yields the same catalogue, inventory and fault rolls.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform integer in `[0, n)` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `n` random decimal digits.
    pub fn digits(&mut self, n: usize) -> String {
        (0..n).map(|_| char::from(b'0' + self.below(10) as u8)).collect()
    }

    /// `n` random characters from `[A-Z0-9]`.
    pub fn alnum(&mut self, n: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        (0..n)
            .map(|_| char::from(ALPHABET[self.below(ALPHABET.len() as u64) as usize]))
            .collect()
    }
}

/// Appends the Luhn check digit to a string of decimal digits.
pub fn with_luhn(body: &str) -> String {
    let check = luhn::checksum(body.as_bytes());
    let mut s = body.to_owned();
    s.push(char::from(check));
    s
}

/// An ICCID: `prefix` (starting with `89`) followed by random digits up to `len - 1` digits,
/// then the Luhn check digit, `len` digits in all (19 or 20).
pub fn iccid(rng: &mut Rng, prefix: &str, len: usize) -> String {
    let body_len = len.saturating_sub(1).max(prefix.len());
    let body = format!("{prefix}{}", rng.digits(body_len - prefix.len()));
    with_luhn(&body)
}

/// The remainder of a decimal string modulo 97.
pub fn mod97(digits: &str) -> u32 {
    digits
        .bytes()
        .filter(u8::is_ascii_digit)
        .fold(0u32, |acc, d| (acc * 10 + u32::from(d - b'0')) % 97)
}

/// An EID: 32 digits, `89049032` + 22 random digits + two check digits chosen so that the
/// whole number mod 97 == 1 (GSMA SGP.02 / ISO 7064 MOD 97-10, as for IBANs).
pub fn eid(rng: &mut Rng) -> String {
    let body = format!("89049032{}", rng.digits(22));
    let rem = mod97(&format!("{body}00"));
    let check = 98 - rem;
    format!("{body}{check:02}")
}

/// An SGP.22 activation code `LPA:1$<fqdn>$<matching id>` with a matching id like
/// `ABCDE-FGHIJ-KLMNO-PQRST`.
pub fn activation_code(rng: &mut Rng, fqdn: &str) -> String {
    let parts: Vec<String> = (0..4).map(|_| rng.alnum(5)).collect();
    format!("LPA:1${fqdn}${}", parts.join("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identifiers_are_valid() {
        let mut rng = Rng::new(7);
        for _ in 0..500 {
            let i = iccid(&mut rng, "8985201", 19);
            assert_eq!(i.len(), 19);
            assert!(luhn::valid(&i), "{i}");
            let i20 = iccid(&mut rng, "893244", 20);
            assert_eq!(i20.len(), 20);
            assert!(luhn::valid(&i20), "{i20}");
            let e = eid(&mut rng);
            assert_eq!(e.len(), 32);
            assert_eq!(mod97(&e), 1, "{e}");
            let ac = activation_code(&mut rng, "rsp.example.test");
            assert!(ac.starts_with("LPA:1$rsp.example.test$"));
        }
    }

    #[test]
    fn rng_is_deterministic() {
        let a: Vec<u64> = {
            let mut r = Rng::new(42);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(42);
            (0..5).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
    }
}

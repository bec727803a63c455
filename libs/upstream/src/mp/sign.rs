//! MP request signing: Apache APISIX `hmac-auth`, old header style.
//!
//! Headers: `X-HMAC-ACCESS-KEY`, `X-HMAC-ALGORITHM: hmac-sha256`, `Date` (GMT),
//! `X-HMAC-SIGNED-HEADERS: Accept-Language;Content-Type`, `X-HMAC-SIGNATURE`, and
//! optionally `X-HMAC-DIGEST` (Base64 SHA-256 of the body).
//!
//! `X-HMAC-SIGNATURE = Base64(HMAC-SHA256(secret, S))` with
//! `S = METHOD\nPATH\nCANONICAL_QUERY\nACCESS_KEY\nDATE\n` + `name:value\n` for each signed
//! header in order. `CANONICAL_QUERY`: keys sorted, `k=v` (`k=` when empty), each part
//! URI-escaped (RFC 3986 unreserved characters kept, the rest `%XX`), joined by `&`.
//! The sandbox verifies with [`verify`], so both sides agree by construction.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// `X-HMAC-ACCESS-KEY`.
pub const HEADER_ACCESS_KEY: &str = "X-HMAC-ACCESS-KEY";
/// `X-HMAC-ALGORITHM`.
pub const HEADER_ALGORITHM: &str = "X-HMAC-ALGORITHM";
/// `X-HMAC-SIGNED-HEADERS`.
pub const HEADER_SIGNED_HEADERS: &str = "X-HMAC-SIGNED-HEADERS";
/// `X-HMAC-SIGNATURE`.
pub const HEADER_SIGNATURE: &str = "X-HMAC-SIGNATURE";
/// `X-HMAC-DIGEST`.
pub const HEADER_DIGEST: &str = "X-HMAC-DIGEST";
/// The only algorithm used.
pub const ALGORITHM: &str = "hmac-sha256";
/// The headers we sign, in order.
pub const SIGNED_HEADERS: [&str; 2] = ["Accept-Language", "Content-Type"];

/// What a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SigningInput<'a> {
    /// HTTP method, upper case (`GET`).
    pub method: &'a str,
    /// The request path (`/mp-api/api/esim/queryTraffic`), without the query.
    pub path: &'a str,
    /// Decoded query pairs, in any order.
    pub query: &'a [(&'a str, &'a str)],
    /// The access key.
    pub access_key: &'a str,
    /// The `Date` header value.
    pub date: &'a str,
    /// The signed headers as `(name, value)`, in the order of `X-HMAC-SIGNED-HEADERS`.
    pub signed_headers: &'a [(&'a str, &'a str)],
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn uri_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical query: pairs sorted by key (then value), `k=v`, escaped, joined by `&`.
/// Also the exact query string the client sends, so both sides see the same pairs.
pub fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(&str, &str)> = query.to_vec();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", uri_escape(k), uri_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The string to sign.
pub fn string_to_sign(input: &SigningInput<'_>) -> String {
    let mut s = format!(
        "{}\n{}\n{}\n{}\n{}\n",
        input.method,
        input.path,
        canonical_query(input.query),
        input.access_key,
        input.date
    );
    for (name, value) in input.signed_headers {
        s.push_str(name);
        s.push(':');
        s.push_str(value);
        s.push('\n');
    }
    s
}

fn mac(secret: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// `X-HMAC-SIGNATURE` for a request.
pub fn signature(secret: &str, input: &SigningInput<'_>) -> String {
    let mut m = mac(secret);
    m.update(string_to_sign(input).as_bytes());
    STANDARD.encode(m.finalize().into_bytes())
}

/// Checks a received `X-HMAC-SIGNATURE` in constant time.
pub fn verify(secret: &str, input: &SigningInput<'_>, signature_b64: &str) -> bool {
    let Ok(sig) = STANDARD.decode(signature_b64.trim()) else {
        return false;
    };
    let mut m = mac(secret);
    m.update(string_to_sign(input).as_bytes());
    m.verify_slice(&sig).is_ok()
}

/// `X-HMAC-DIGEST`: Base64 SHA-256 of the body.
pub fn body_digest(body: &[u8]) -> String {
    STANDARD.encode(Sha256::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature computed by hand: the string to sign written out literally and
    /// HMACed with the `hmac` crate directly.
    #[test]
    fn signature_matches_hand_computation() {
        let date = "Tue, 19 Jan 2038 03:14:07 GMT";
        let input = SigningInput {
            method: "GET",
            path: "/mp-api/api/esim/queryTraffic",
            query: &[
                ("requestId", "req 1/ü"),
                ("orderCode", "ORDER_1726522312360550400"),
            ],
            access_key: "SG00000010",
            date,
            signed_headers: &[("Accept-Language", "en-US"), ("Content-Type", "application/json")],
        };
        let literal = "GET\n/mp-api/api/esim/queryTraffic\n\
                       orderCode=ORDER_1726522312360550400&requestId=req%201%2F%C3%BC\n\
                       SG00000010\nTue, 19 Jan 2038 03:14:07 GMT\n\
                       Accept-Language:en-US\nContent-Type:application/json\n";
        assert_eq!(string_to_sign(&input), literal);
        let mut m = Hmac::<Sha256>::new_from_slice(b"sandbox-mp-secret").unwrap();
        m.update(literal.as_bytes());
        let expected = STANDARD.encode(m.finalize().into_bytes());
        assert_eq!(signature("sandbox-mp-secret", &input), expected);
        assert!(verify("sandbox-mp-secret", &input, &expected));
        assert!(!verify("other-secret", &input, &expected));
        assert!(!verify("sandbox-mp-secret", &input, "not base64!"));
    }

    #[test]
    fn empty_values_and_post() {
        let input = SigningInput {
            method: "POST",
            path: "/mp-api/api/esim/v2/activationCode",
            query: &[("b", ""), ("a", "1")],
            access_key: "AK",
            date: "D",
            signed_headers: &[],
        };
        assert_eq!(
            string_to_sign(&input),
            "POST\n/mp-api/api/esim/v2/activationCode\na=1&b=\nAK\nD\n"
        );
        assert_eq!(body_digest(b""), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    }
}

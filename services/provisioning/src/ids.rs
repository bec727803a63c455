//! Identifiers and request fields: resource ids (ULIDs), resource names, request ids, page
//! tokens and request hashes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sha2::{Digest, Sha256};

use crate::error::{ProvisioningError, Result};

const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A new resource id: a ULID (26 Crockford base-32 characters, lower case as AIP-122 wants
/// resource ids) made from a UUIDv7, so ids sort by creation time.
pub fn new_id() -> String {
    let mut value = uuid::Uuid::now_v7().as_u128();
    let mut out = [0u8; 26];
    for slot in out.iter_mut().rev() {
        *slot = CROCKFORD[(value & 31) as usize];
        value >>= 5;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

fn valid_id(id: &str) -> bool {
    id.len() == 26 && id.bytes().all(|b| CROCKFORD.contains(&b))
}

/// A caller's id for a new resource (`esim_id`), lower-cased; `None` when empty (we pick one).
pub fn parse_new_id(field: &str, id: &str) -> Result<Option<String>> {
    if id.is_empty() {
        return Ok(None);
    }
    let id = id.to_ascii_lowercase();
    if !valid_id(&id) {
        return Err(ProvisioningError::invalid(
            field,
            "must be 26 characters of Crockford base 32 (a ULID)",
        ));
    }
    Ok(Some(id))
}

/// The id in `esims/{id}`.
pub fn parse_esim_name(field: &str, name: &str) -> Result<String> {
    let id = name
        .strip_prefix("esims/")
        .ok_or_else(|| ProvisioningError::invalid(field, "expected `esims/{esim}`"))?;
    let id = id.to_ascii_lowercase();
    if !valid_id(&id) {
        return Err(ProvisioningError::invalid(field, "`{esim}` is not an eSIM id"));
    }
    Ok(id)
}

/// The eSIM and add-on ids in `esims/{esim}/addons/{addon}`.
pub fn parse_addon_name(field: &str, name: &str) -> Result<(String, String)> {
    let bad = || ProvisioningError::invalid(field, "expected `esims/{esim}/addons/{addon}`");
    let rest = name.strip_prefix("esims/").ok_or_else(bad)?;
    let (esim, addon) = rest.split_once("/addons/").ok_or_else(bad)?;
    let (esim, addon) = (esim.to_ascii_lowercase(), addon.to_ascii_lowercase());
    if !valid_id(&esim) || !valid_id(&addon) {
        return Err(bad());
    }
    Ok((esim, addon))
}

/// `esims/{id}`.
pub fn esim_name(id: &str) -> String {
    format!("esims/{id}")
}

/// `esims/{esim}/addons/{addon}`.
pub fn addon_name(esim: &str, addon: &str) -> String {
    format!("esims/{esim}/addons/{addon}")
}

/// An order name `orders/{order}`: one non-empty segment of at most 128 characters.
pub fn validate_order(field: &str, order: &str) -> Result<()> {
    let id = order
        .strip_prefix("orders/")
        .ok_or_else(|| ProvisioningError::invalid(field, "expected `orders/{order}`"))?;
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
    {
        return Err(ProvisioningError::invalid(
            field,
            "`{order}` must be 1-128 characters of letters, digits, `-`, `_`, `.`, `~`",
        ));
    }
    Ok(())
}

/// An AIP-155 request id: 1-64 characters of `[A-Za-z0-9._~:-]`. Required unless `optional`.
pub fn validate_request_id(request_id: &str, optional: bool) -> Result<()> {
    if request_id.is_empty() {
        return if optional {
            Ok(())
        } else {
            Err(ProvisioningError::invalid("request_id", "required"))
        };
    }
    if request_id.len() > 64
        || !request_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b':' | b'-'))
    {
        return Err(ProvisioningError::invalid(
            "request_id",
            "must be 1-64 characters of `[A-Za-z0-9._~:-]`",
        ));
    }
    Ok(())
}

/// An SFT plan id (SFT's own identifier, passed on as is): 1-64 characters, no control
/// characters.
pub fn validate_sft_plan_id(field: &str, plan: &str) -> Result<()> {
    Ok(esim_runtime::api::text(
        plan,
        field,
        esim_domain::TextRule::required(64),
    )?)
}

/// A hex SHA-256 over the parts (separated so `a|bc` ≠ `ab|c`).
pub fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A page token: the last id returned and a hash of the filters it belongs to.
pub fn page_token(filters: &str, last_id: &str) -> String {
    B64.encode(format!("{}|{last_id}", &hash(&[filters])[..16]))
}

/// The last id of a page token, checked against the filters of this call.
pub fn parse_page_token(token: &str, filters: &str) -> Result<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = |msg: &str| ProvisioningError::invalid("page_token", msg);
    let text = B64
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| bad("not a token this service issued"))?;
    let (filter_hash, last) = text
        .split_once('|')
        .ok_or_else(|| bad("not a token this service issued"))?;
    if filter_hash != &hash(&[filters])[..16] {
        return Err(bad("belongs to a call with other filters"));
    }
    if !valid_id(last) {
        return Err(bad("not a token this service issued"));
    }
    Ok(Some(last.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_ulids_in_creation_order() {
        let a = new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id();
        assert_eq!(a.len(), 26);
        assert!(a < b, "{a} < {b}");
        assert_eq!(parse_esim_name("name", &esim_name(&a)).unwrap(), a);
        assert_eq!(
            parse_esim_name(
                "name",
                &esim_name(&a).to_ascii_uppercase().replace("ESIMS", "esims")
            )
            .unwrap(),
            a
        );
        assert!(parse_esim_name("name", "esims/x").is_err());
        assert!(parse_esim_name("name", "orders/x").is_err());
        assert_eq!(parse_addon_name("name", &addon_name(&a, &b)).unwrap(), (a, b));
    }

    #[test]
    fn request_ids_and_orders() {
        assert!(validate_request_id("", true).is_ok());
        assert!(validate_request_id("", false).is_err());
        assert!(validate_request_id("0190f8e2-aaaa:b.c~d_e", false).is_ok());
        assert!(validate_request_id("has space", false).is_err());
        assert!(validate_request_id(&"x".repeat(65), false).is_err());
        assert!(validate_order("order", "orders/abc-1").is_ok());
        assert!(validate_order("order", "orders/").is_err());
        assert!(validate_order("order", "orders/a/b").is_err());
        assert!(validate_order("order", "abc").is_err());
    }

    #[test]
    fn page_tokens_belong_to_their_filters() {
        let id = new_id();
        let token = page_token("state=1", &id);
        assert_eq!(parse_page_token(&token, "state=1").unwrap(), Some(id));
        assert!(parse_page_token(&token, "state=2").is_err());
        assert!(parse_page_token("garbage", "").is_err());
        assert_eq!(parse_page_token("", "x").unwrap(), None);
        assert_ne!(hash(&["a|", "bc"]), hash(&["a", "|bc"]));
    }
}

use std::fmt;

/// A secret string (API key, password, token). `Debug` prints `***`; there is no
/// `Display`; the value is read only through [`Secret::expose`]. It deliberately does
/// not implement `Serialize`: a secret is never written out by accident.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The plain secret, for the one place that needs it (a header, a signature).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty (e.g. not configured).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

/// Serializes the plain value. Only for wire types that must send a credential upstream;
/// use it explicitly with `#[serde(serialize_with = "esim_domain::Secret::serialize_exposed")]`.
impl Secret {
    /// Serde helper that writes the plain secret (for request bodies that carry it).
    pub fn serialize_exposed<S: serde::Serializer>(v: &Secret, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.expose(), "hunter2");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Cfg {
            key: Secret,
        }
        assert!(!format!("{:?}", Cfg { key: s }).contains("hunter2"));
    }
}

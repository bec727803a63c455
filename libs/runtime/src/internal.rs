//! Service-to-service trust: backends accept calls only from the gateway and from each other.
//! Every internal caller sends a shared credential (`x-esim-internal-token`, from
//! `<PREFIX>_INTERNAL_TOKEN` or `<PREFIX>_INTERNAL_TOKEN_FILE`); a backend compares it in
//! constant time and refuses anything else with UNAUTHENTICATED, so a caller that reaches a
//! backend port directly gets nothing but health and reflection (kept open for probes and
//! grpcurl). Where a service mesh already enforces mTLS and authorization between pods,
//! `<PREFIX>_INTERNAL_AUTH=off` turns the check (not the sending) off.

use std::{
    fmt,
    future::{Ready, ready},
    sync::Arc,
    task::{Context, Poll},
};

use esim_config::{ConfigError, Env};
use futures::future::Either;
use http::{HeaderValue, Request, Response};
use subtle::ConstantTimeEq;
use tonic::{Status, body::Body};
use tower::{Layer, Service};

/// The header carrying the internal credential.
pub const HEADER: &str = "x-esim-internal-token";

/// Shortest credential accepted: 32 characters (e.g. `openssl rand -hex 16` or more).
const MIN_LEN: usize = 32;

/// Paths open to every caller: health for probes, reflection for grpcurl.
const OPEN_PREFIXES: [&str; 2] = ["/grpc.health.v1.Health/", "/grpc.reflection."];

/// The suite's internal credential; `Debug` never shows it.
#[derive(Clone)]
pub struct InternalCredential {
    header: Arc<HeaderValue>,
}

impl fmt::Debug for InternalCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InternalCredential(***)")
    }
}

impl InternalCredential {
    /// A credential from its text: at least 32 visible ASCII characters.
    pub fn new(token: &str) -> Result<Self, String> {
        if token.len() < MIN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("must be at least {MIN_LEN} visible ASCII characters"));
        }
        let mut header = HeaderValue::from_str(token).map_err(|err| err.to_string())?;
        header.set_sensitive(true);
        Ok(Self {
            header: Arc::new(header),
        })
    }

    /// A random credential (the all-in-one suite makes one per run).
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self::new(&token).unwrap_or_else(|_| unreachable!("64 hex digits are a valid credential"))
    }

    /// The credential as text, to hand to services started in the same process.
    pub fn expose(&self) -> &str {
        self.header.to_str().unwrap_or_default()
    }

    /// The header value to send.
    pub fn header_value(&self) -> HeaderValue {
        (*self.header).clone()
    }

    fn matches(&self, presented: &HeaderValue) -> bool {
        self.header.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

/// How a service treats internal calls, from `<PREFIX>_INTERNAL_TOKEN[_FILE]` and
/// `<PREFIX>_INTERNAL_AUTH` (`token`, the default, or `off`).
#[derive(Debug, Clone)]
pub struct InternalAuth {
    /// What this service sends on its calls to other services (always, when configured).
    pub credential: Option<InternalCredential>,
    /// Whether incoming calls must carry it.
    pub enforce: bool,
}

impl InternalAuth {
    /// Reads the settings; a service that enforces the check without a credential does not
    /// start, so a misconfigured backend is never silently open.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let credential = env
            .secret("INTERNAL_TOKEN")?
            .map(|token| {
                InternalCredential::new(&token).map_err(|reason| ConfigError::Invalid {
                    key: env.key("INTERNAL_TOKEN"),
                    value: "***".into(),
                    reason,
                })
            })
            .transpose()?;
        let enforce = match env.string_or("INTERNAL_AUTH", "token").as_str() {
            "token" => true,
            "off" => false,
            other => {
                return Err(ConfigError::Invalid {
                    key: env.key("INTERNAL_AUTH"),
                    value: other.to_owned(),
                    reason: "expected `token` or `off`".into(),
                });
            }
        };
        if enforce && credential.is_none() {
            return Err(ConfigError::Missing {
                key: format!(
                    "{} (or {}_FILE; or {}=off behind a mesh that authenticates callers)",
                    env.key("INTERNAL_TOKEN"),
                    env.key("INTERNAL_TOKEN"),
                    env.key("INTERNAL_AUTH"),
                ),
            });
        }
        Ok(Self { credential, enforce })
    }

    /// Trusts every caller and sends nothing (tests of a single service).
    pub fn disabled() -> Self {
        Self {
            credential: None,
            enforce: false,
        }
    }

    /// Sends and requires `credential`.
    pub fn with(credential: InternalCredential) -> Self {
        Self {
            credential: Some(credential),
            enforce: true,
        }
    }
}

/// Tower layer that lets only internal callers reach the served APIs (health and reflection
/// stay open); with no credential it lets every call through.
#[derive(Debug, Clone, Default)]
pub struct InternalAuthLayer {
    required: Option<InternalCredential>,
}

impl InternalAuthLayer {
    /// Requires `required` on every call, when set.
    pub fn new(required: Option<InternalCredential>) -> Self {
        Self { required }
    }
}

impl<S> Layer<S> for InternalAuthLayer {
    type Service = RequireInternal<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireInternal {
            inner,
            required: self.required.clone(),
        }
    }
}

/// See [`InternalAuthLayer`].
#[derive(Debug, Clone)]
pub struct RequireInternal<S> {
    inner: S,
    required: Option<InternalCredential>,
}

impl<S, ReqBody> Service<Request<ReqBody>> for RequireInternal<S>
where
    S: Service<Request<ReqBody>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response<Body>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let Some(required) = &self.required else {
            return Either::Left(self.inner.call(request));
        };
        let path = request.uri().path();
        let open = OPEN_PREFIXES.iter().any(|prefix| path.starts_with(prefix));
        // Removed either way, so the credential never reaches handlers or their logs.
        let presented = request.headers_mut().remove(HEADER);
        if open || presented.is_some_and(|presented| required.matches(&presented)) {
            return Either::Left(self.inner.call(request));
        }
        tracing::warn!(method = %request.uri().path(), "refused a call without the internal credential");
        let status = Status::unauthenticated(
            "this port serves the suite's own services only: call through the gateway",
        );
        Either::Right(ready(Ok(status.into_http())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_refuse_an_unprotected_backend() {
        let env = Env::from_vars("CATALOG", Vec::<(String, String)>::new());
        assert!(matches!(
            InternalAuth::from_env(&env),
            Err(ConfigError::Missing { .. })
        ));

        let env = Env::from_vars("CATALOG", [("CATALOG_INTERNAL_AUTH", "off")]);
        let auth = InternalAuth::from_env(&env).unwrap();
        assert!(!auth.enforce && auth.credential.is_none());

        let env = Env::from_vars("CATALOG", [("CATALOG_INTERNAL_TOKEN", "short")]);
        assert!(InternalAuth::from_env(&env).is_err());

        let token = "0123456789abcdef0123456789abcdef";
        let env = Env::from_vars("CATALOG", [("CATALOG_INTERNAL_TOKEN", token)]);
        let auth = InternalAuth::from_env(&env).unwrap();
        assert!(auth.enforce);
        assert_eq!(auth.credential.unwrap().expose(), token);
    }

    #[test]
    fn the_credential_never_shows_in_debug_output() {
        let credential = InternalCredential::generate();
        assert!(!format!("{credential:?}").contains(credential.expose()));
        assert_eq!(credential.expose().len(), 64);
    }

    #[test]
    fn comparison_accepts_only_the_exact_credential() {
        let credential = InternalCredential::generate();
        assert!(credential.matches(&credential.header_value()));
        let mut other = credential.expose().to_owned();
        other.pop();
        other.push('x');
        assert!(!credential.matches(&HeaderValue::from_str(&other).unwrap()));
        assert!(!credential.matches(&HeaderValue::from_static("")));
    }
}

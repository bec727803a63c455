//! Who may call what: [`Authorized`] wraps each service the gateway serves (the forwarded
//! backends and its own `GatewayService`; health and reflection stay open). Every call must
//! present an active API key as `authorization: Bearer <key>` (UNAUTHENTICATED otherwise), the
//! key must grant the scope the method requires ([`crate::scopes`]; PERMISSION_DENIED
//! otherwise), and its bucket for that scope must hold a token (RESOURCE_EXHAUSTED with
//! RetryInfo otherwise) — all answered here, before any backend is called. A call let through
//! loses its `authorization` header (backends never see keys) and carries the [`Caller`] in its
//! extensions. Keys are never logged; their shown prefix and name are.

use std::{
    convert::Infallible,
    future::{Ready, ready},
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::{BoxFuture, Either};
use http::{Request, Response, header::AUTHORIZATION};
use tonic::{Status, body::Body, server::NamedService};
use tower::Service;

use crate::cache::{Caller, KeyCache, Refusal};
use crate::keys;
use crate::scopes::{self, Scope};

/// Checks every call of `S` against the keys in the cache before `S` sees it.
#[derive(Debug, Clone)]
pub struct Authorized<S> {
    inner: S,
    keys: Arc<KeyCache>,
}

impl<S> Authorized<S> {
    /// `inner`, open only to callers with an active key from `keys`.
    pub fn new(inner: S, keys: Arc<KeyCache>) -> Self {
        Self { inner, keys }
    }
}

impl<S: NamedService> NamedService for Authorized<S> {
    const NAME: &'static str = S::NAME;
}

/// The caller of `method`, if its `authorization` header grants it and its rate limit allows.
pub fn authorize(keys: &KeyCache, method: &str, authorization: Option<&[u8]>) -> Result<Caller, Status> {
    let Some(header) = authorization else {
        return Err(Status::unauthenticated(
            "missing API key: send `authorization: Bearer <key>`",
        ));
    };
    let Some(key) = keys::from_bearer(header) else {
        return Err(Status::unauthenticated(
            "malformed authorization: expected `Bearer esk_...`",
        ));
    };
    let Some(active) = keys.lookup(key) else {
        tracing::debug!(key_prefix = keys::shown_prefix(key), %method, "unknown or revoked API key");
        return Err(Status::unauthenticated("unknown or revoked API key"));
    };
    let caller = active.caller();
    let Some(scope) = scopes::required_scope(method) else {
        tracing::info!(api_key = %caller.name, key_prefix = %caller.key_prefix, %method, "method open to no API key");
        return Err(Status::permission_denied(format!(
            "{method} is not open to API keys"
        )));
    };
    match active.admit(scope) {
        Ok(()) => Ok(caller.clone()),
        Err(Refusal::NotGranted) => {
            tracing::info!(api_key = %caller.name, key_prefix = %caller.key_prefix, %method, %scope, "scope not granted");
            Err(Status::permission_denied(format!(
                "API key {} ({}) lacks the {} scope that {method} requires",
                caller.key_prefix,
                caller.name,
                scope_label(scope)
            )))
        }
        Err(Refusal::RateLimited(wait)) => {
            tracing::debug!(api_key = %caller.name, key_prefix = %caller.key_prefix, %scope, ?wait, "rate limited");
            Err(esim_runtime::status::resource_exhausted(
                format!(
                    "API key {} exceeded its rate limit for {} calls; retry in {} ms",
                    caller.key_prefix,
                    scope_label(scope),
                    wait.as_millis().max(1)
                ),
                wait,
            ))
        }
    }
}

fn scope_label(scope: Scope) -> &'static str {
    scope.to_proto().as_str_name().trim_start_matches("SCOPE_")
}

impl<S> Service<Request<Body>> for Authorized<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<
        Ready<Result<Response<Body>, Infallible>>,
        BoxFuture<'static, Result<Response<Body>, Infallible>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let decision = authorize(
            &self.keys,
            request.uri().path(),
            request.headers().get(AUTHORIZATION).map(|value| value.as_bytes()),
        );
        let caller = match decision {
            Ok(caller) => caller,
            Err(status) => return Either::Left(ready(Ok(status.into_http()))),
        };
        // Every value, in case a caller sent several.
        request.headers_mut().remove(AUTHORIZATION);
        request.extensions_mut().insert(caller.clone());
        let call = self.inner.call(request);
        Either::Right(Box::pin(async move {
            // The call's span (from the runtime's call-context layer) is current here; fields
            // it does not declare are ignored.
            let span = tracing::Span::current();
            span.record("api_key", &*caller.name);
            span.record("key_prefix", &*caller.key_prefix);
            call.await
        }))
    }
}

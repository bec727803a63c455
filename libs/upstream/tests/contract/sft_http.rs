use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use base64::Engine;
use esim_upstream::config::{HttpSettings, SftConfig};
use esim_upstream::error::ErrorKind;
use esim_upstream::sft::{LifeCycle, SftClient, SimQuery, wire};

use crate::server::spawn;

fn jwt(n: usize) -> String {
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let exp = chrono::Utc::now().timestamp() + 3600;
    format!(
        "{}.{}.sig{n}",
        e.encode(br#"{"alg":"HS256"}"#),
        e.encode(format!("{{\"exp\":{exp},\"n\":{n}}}"))
    )
}

#[derive(Default)]
struct State {
    logins: AtomicUsize,
    revoked_first: std::sync::atomic::AtomicBool,
}

fn app(state: Arc<State>) -> Router {
    let s1 = state.clone();
    let s2 = state.clone();
    Router::new()
        .route(
            "/sft/api/login",
            post(move |body: axum::body::Bytes| {
                let s = s1.clone();
                async move {
                    let r: wire::LoginRequest = serde_json::from_slice(&body).unwrap();
                    assert_eq!(r.password.expose(), "sandbox-password");
                    let n = s.logins.fetch_add(1, Ordering::SeqCst) + 1;
                    format!("{{\"AccessToken\":\"{}\",\"RefreshToken\":\"r{n}\"}}", jwt(n))
                }
            }),
        )
        .route(
            "/sft/api/fetchSIM",
            get(move |h: HeaderMap, q: axum::extract::RawQuery| {
                let s = s2.clone();
                async move {
                    let auth = h
                        .get("x-authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    if s.revoked_first.load(Ordering::SeqCst) && auth.ends_with("sig1") {
                        return (StatusCode::UNAUTHORIZED, String::new());
                    }
                    assert!(auth.starts_with("Bearer "));
                    assert!(q.0.unwrap().contains("simStatusId=12"));
                    (
                        StatusCode::OK,
                        r#"{"Response":{"resultCode":0,"resultParam":{"resultDescription":"Success"},
                        "responseParam":{"rows":[{"endpointId":9001,"iccid":"8943108169999589689",
                        "activationCode":{"textQrCode":"LPA:1$smdp.bics.com$K1-SECRET"}},
                        {"endPointId":null,"iccid":null,"activationCode":null}]}}}"#
                            .to_owned(),
                    )
                }
            }),
        )
        .route(
            "/sft/api/EndPointLifeCycleChange",
            post(|body: axum::body::Bytes| async move {
                let r: wire::RequestEnvelope<wire::LifeCycleParam> = serde_json::from_slice(&body).unwrap();
                assert_eq!(r.request.request_param.life_cycle, "A");
                r#"{"Response":{"resultCode":1001,"resultParam":{"resultDescription":"Activation failed"}}}"#
            }),
        )
}

fn client(base: &str) -> SftClient {
    SftClient::new(SftConfig {
        base_url: format!("{base}/sft"),
        lifecycle_timeout: Duration::from_secs(3),
        http: HttpSettings {
            request_timeout: Duration::from_secs(3),
            ..HttpSettings::default()
        },
        ..SftConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn fetch_sim_with_bearer_and_relogin_on_401() {
    let state = Arc::new(State::default());
    let base = spawn(app(state.clone())).await;
    let c = client(&base);
    let sims = c.fetch_sim(&SimQuery::available(1), "r").await.unwrap();
    assert_eq!(sims.len(), 1, "the all-null row is not a SIM");
    assert_eq!(sims[0].end_point_id, "9001");
    assert_eq!(sims[0].iccid.as_str(), "8943108169999589689");
    assert_eq!(
        sims[0].activation_code.as_ref().unwrap().smdp_address(),
        "smdp.bics.com"
    );
    assert!(!format!("{sims:?}").contains("K1-SECRET"));
    assert_eq!(state.logins.load(Ordering::SeqCst), 1);
    // The first token is revoked: one 401, one re-login, one retry.
    state.revoked_first.store(true, Ordering::SeqCst);
    c.fetch_sim(&SimQuery::available(1), "r").await.unwrap();
    assert_eq!(state.logins.load(Ordering::SeqCst), 2);
    assert!(!format!("{c:?}").contains("sandbox-password"));
}

#[tokio::test]
async fn result_code_is_an_error() {
    let state = Arc::new(State::default());
    let base = spawn(app(state)).await;
    let c = client(&base);
    let e = c
        .change_life_cycle("9001", LifeCycle::Active, "1", "r")
        .await
        .unwrap_err();
    assert_eq!(e.upstream_code(), Some(1001));
    assert!(matches!(e.kind, ErrorKind::Upstream { .. }));
    assert!(e.to_string().contains("Activation failed"), "{e}");
}

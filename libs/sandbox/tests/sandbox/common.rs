//! Test harness: a sandbox on a free port, and hand-rolled MP signing.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use esim_sandbox::{Sandbox, SandboxConfig};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

pub const MP_KEY: &str = "SG00000010";
pub const MP_SECRET: &str = "sandbox-mp-secret";

/// A running sandbox.
pub struct Running {
    pub sandbox: Sandbox,
    pub base: String,
    pub http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub async fn start() -> Running {
    start_with(SandboxConfig::default()).await
}

pub async fn start_with(config: SandboxConfig) -> Running {
    let sandbox = Sandbox::new(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let s = sandbox.clone();
    tokio::spawn(async move {
        s.serve(listener, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Running {
        sandbox,
        base,
        http: reqwest::Client::new(),
        _stop: tx,
    }
}

/// Escapes all but RFC 3986 unreserved characters (written independently of the sandbox).
fn esc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The APISIX hmac-auth signature, computed by hand.
pub fn mp_signature(secret: &str, method: &str, path: &str, query: &[(&str, &str)], date: &str) -> String {
    let mut q: Vec<(String, String)> = query.iter().map(|(k, v)| (esc(k), esc(v))).collect();
    q.sort();
    let cq = q
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let s = format!(
        "{method}\n{path}\n{cq}\n{MP_KEY}\n{date}\nAccept-Language:en-US\nContent-Type:application/json\n"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(s.as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A signed MP request (`path` relative to `/mp-api/api/esim/`).
    pub fn mp_request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
        secret: &str,
    ) -> reqwest::RequestBuilder {
        let full = format!("/mp-api/api/esim/{path}");
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let sig = mp_signature(secret, method, &full, query, &date);
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let qs = query
            .iter()
            .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let url = if qs.is_empty() {
            self.url(&full)
        } else {
            format!("{}?{qs}", self.url(&full))
        };
        let mut rb = self
            .http
            .request(m, url)
            .header("X-HMAC-ACCESS-KEY", MP_KEY)
            .header("X-HMAC-ALGORITHM", "hmac-sha256")
            .header("Date", date)
            .header("X-HMAC-SIGNED-HEADERS", "Accept-Language;Content-Type")
            .header("Accept-Language", "en-US")
            .header("Content-Type", "application/json")
            .header("X-HMAC-SIGNATURE", sig);
        if let Some(b) = body {
            rb = rb.body(b.to_string());
        }
        rb
    }

    /// GET an admin route (`/_sandbox/...`) and its JSON body.
    pub async fn admin_get(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn mp_get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let r = self
            .mp_request("GET", path, query, None, MP_SECRET)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    pub async fn mp_post(&self, path: &str, body: Value) -> Value {
        let r = self
            .mp_request("POST", path, &[], Some(body), MP_SECRET)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Creates an MP order for the first product; returns the `data` object.
    pub async fn mp_order(&self, extra: Value) -> Value {
        let mut body = serde_json::json!({"productId": 1});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let v = self.mp_post("v2/activationCode", body).await;
        assert_eq!(v["code"], 200, "{v}");
        v["data"].clone()
    }

    pub async fn fms(&self, path: &str, token: Option<&str>, body: Value) -> Value {
        let mut rb = self
            .http
            .post(self.url(&format!("/fms{path}")))
            .header("Accept-Language", "en-US")
            .json(&body);
        if let Some(t) = token {
            rb = rb.header("x-access-token", t);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Registers an FMS user; returns its token.
    pub async fn fms_user(&self, email: &str) -> String {
        let v = self
            .fms(
                "/user/emailRegister",
                None,
                serde_json::json!({"appId": 10, "email": email, "partnerCode": "1000000005",
                    "passwd": "6e99d95b538ad2db523f17c68fe961c5", "userType": 4}),
            )
            .await;
        assert_eq!(v["code"], 0, "{v}");
        v["data"]["token"].as_str().unwrap().to_owned()
    }

    pub async fn sft_token(&self) -> String {
        let v: Value = self
            .http
            .post(self.url("/sft/api/login"))
            .json(&serde_json::json!({"username": "sandbox", "password": "sandbox-password"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["Response"]["responseParam"]["AccessToken"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A JSON call to SFT with a bearer token; returns (HTTP status, body).
    pub async fn sft(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self
            .http
            .request(m, self.url(&format!("/sft{path}")))
            .header("X-Authorization", format!("Bearer {token}"));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// The sorted keys of a JSON object.
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

pub fn sorted(v: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = v.iter().map(|s| (*s).to_owned()).collect();
    k.sort();
    k
}

/// Luhn check written independently.
pub fn luhn_ok(s: &str) -> bool {
    let mut sum = 0;
    for (i, c) in s.chars().rev().enumerate() {
        let mut d = c.to_digit(10).unwrap();
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

pub fn eid_ok(s: &str) -> bool {
    s.len() == 32
        && s.bytes().all(|b| b.is_ascii_digit())
        && s.bytes().fold(0u32, |a, b| (a * 10 + u32::from(b - b'0')) % 97) == 1
}

pub fn iccid_ok(s: &str) -> bool {
    s.starts_with("89") && (18..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) && luhn_ok(s)
}

/// `LPA:1$<fqdn>$<matching id>`.
pub fn activation_code_ok(s: &str) -> bool {
    let parts: Vec<&str> = s.split('$').collect();
    parts.len() == 3
        && parts[0] == "LPA:1"
        && parts[1].contains('.')
        && !parts[2].is_empty()
        && parts[2].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

//! The SFT JSON. Envelopes, login and the request fields follow UPSTREAMS.md and the seed
//! (`sft-provisioning-flow.txt`); the shapes of fetchSIM rows beyond `endPointId`, `iccid`,
//! `activationCode.textQrCode`, of the add-on rows and of the refresh call are our choice,
//! kept in this one file. `endPointId` is also accepted as `endpointId` on input — or both
//! at once: the two spellings are read as separate fields (a serde alias would fail with
//! "duplicate field" when both are sent) and `endPointId` wins when both are present.

use serde::{Deserialize, Serialize};

use crate::wire_common::{NumOrStr, Sensitive};

/// `POST /api/login`.
pub const PATH_LOGIN: &str = "/api/login";
/// `POST /api/refreshToken` (our choice; falls back to login on failure).
pub const PATH_REFRESH: &str = "/api/refreshToken";
/// `GET /api/fetchSIM`.
pub const PATH_FETCH_SIM: &str = "/api/fetchSIM";
/// `POST /api/EndPointLifeCycleChange`.
pub const PATH_LIFECYCLE: &str = "/api/EndPointLifeCycleChange";
/// `POST /api/SubscribeAddon`.
pub const PATH_SUBSCRIBE_ADDON: &str = "/api/SubscribeAddon";
/// `GET /api/GetEndPointAddonDetails?endPointId=` (our choice of path).
pub const PATH_ADDON_DETAILS: &str = "/api/GetEndPointAddonDetails";
/// The auth header.
pub const HEADER_AUTH: &str = "X-Authorization";

/// Body of `/api/login`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginRequest {
    /// User.
    pub username: String,
    /// Password.
    pub password: Sensitive,
}

/// Answer of `/api/login` and `/api/refreshToken`. The public docs show the tokens at the top
/// level; other SFT answers wrap their data in `Response.responseParam`, so both places are
/// accepted (top level wins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "LoginResponseIn")]
pub struct LoginResponse {
    /// Short-lived JWT.
    #[serde(rename = "AccessToken")]
    pub access_token: Sensitive,
    /// Refresh token.
    #[serde(rename = "RefreshToken", default)]
    pub refresh_token: Option<Sensitive>,
}

/// The tokens, wherever they are.
#[derive(Debug, Default, Deserialize)]
struct LoginTokensIn {
    #[serde(rename = "AccessToken", default)]
    access_token: Option<Sensitive>,
    #[serde(rename = "RefreshToken", default)]
    refresh_token: Option<Sensitive>,
}

#[derive(Debug, Deserialize)]
struct LoginResponseIn {
    #[serde(flatten)]
    top: LoginTokensIn,
    #[serde(rename = "Response", default)]
    response: Option<LoginEnvelopeIn>,
}

#[derive(Debug, Deserialize)]
struct LoginEnvelopeIn {
    #[serde(rename = "responseParam", default)]
    response_param: Option<LoginTokensIn>,
}

impl TryFrom<LoginResponseIn> for LoginResponse {
    type Error = &'static str;

    fn try_from(value: LoginResponseIn) -> Result<Self, Self::Error> {
        let nested = value.response.and_then(|r| r.response_param).unwrap_or_default();
        let access_token = value
            .top
            .access_token
            .or(nested.access_token)
            .ok_or("no AccessToken in the login answer")?;
        Ok(Self {
            access_token,
            refresh_token: value.top.refresh_token.or(nested.refresh_token),
        })
    }
}

/// Body of `/api/refreshToken`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    /// The refresh token.
    pub refresh_token: Sensitive,
}

/// Request envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestEnvelope<P> {
    /// The request.
    #[serde(rename = "Request")]
    pub request: RequestBody<P>,
}

/// The `Request` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    from = "RequestBodyIn<P>",
    bound(deserialize = "P: Deserialize<'de>")
)]
pub struct RequestBody<P> {
    /// Endpoint (lifecycle calls put it here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_point_id: Option<NumOrStr>,
    /// The parameters.
    pub request_param: P,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestBodyIn<P> {
    #[serde(default)]
    end_point_id: Option<NumOrStr>,
    #[serde(default, rename = "endpointId")]
    endpoint_id_lower: Option<NumOrStr>,
    request_param: P,
}

impl<P> From<RequestBodyIn<P>> for RequestBody<P> {
    fn from(w: RequestBodyIn<P>) -> Self {
        Self {
            end_point_id: w.end_point_id.or(w.endpoint_id_lower),
            request_param: w.request_param,
        }
    }
}

/// `requestParam` of `EndPointLifeCycleChange`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifeCycleParam {
    /// "A" activate, "S" suspend.
    pub life_cycle: String,
    /// Reason code ("1").
    pub reason: String,
}

/// `requestParam` of `SubscribeAddon`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "SubscribeAddonParamIn")]
pub struct SubscribeAddonParam {
    /// Endpoint.
    pub end_point_id: NumOrStr,
    /// Add-on plan.
    pub plan_id: NumOrStr,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscribeAddonParamIn {
    #[serde(default)]
    end_point_id: Option<NumOrStr>,
    #[serde(default, rename = "endpointId")]
    endpoint_id_lower: Option<NumOrStr>,
    plan_id: NumOrStr,
}

impl TryFrom<SubscribeAddonParamIn> for SubscribeAddonParam {
    type Error = &'static str;
    fn try_from(w: SubscribeAddonParamIn) -> Result<Self, Self::Error> {
        Ok(Self {
            end_point_id: w
                .end_point_id
                .or(w.endpoint_id_lower)
                .ok_or("missing field `endPointId` (or `endpointId`)")?,
            plan_id: w.plan_id,
        })
    }
}

/// Response envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseEnvelope<R> {
    /// The response.
    #[serde(rename = "Response")]
    pub response: ResponseBody<R>,
}

/// The `Response` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseBody<R> {
    /// 0 on success.
    pub result_code: i64,
    /// Description.
    #[serde(default)]
    pub result_param: Option<ResultParam>,
    /// Payload.
    #[serde(default = "none")]
    pub response_param: Option<ResponseParam<R>>,
}

fn none<T>() -> Option<T> {
    None
}

/// `resultParam`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultParam {
    /// Human-readable result.
    #[serde(default)]
    pub result_description: Option<String>,
}

/// `responseParam`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseParam<R> {
    /// Rows.
    #[serde(default = "Vec::new")]
    pub rows: Vec<R>,
    /// Total rows (paged calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_count: Option<i64>,
}

/// Query of `fetchSIM`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchSimQuery {
    /// 12 = Pre-Active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim_status_id: Option<i64>,
    /// 1 = Attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim_attach_status_id: Option<i64>,
    /// One SIM by ICCID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iccid: Option<String>,
    /// Page (from 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// Rows per page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_page: Option<u32>,
}

/// `activationCode` of a SIM row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimActivationCode {
    /// The LPA string (credential).
    #[serde(default)]
    pub text_qr_code: Option<Sensitive>,
}

/// A row of `fetchSIM`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "SimRowIn")]
pub struct SimRow {
    /// Endpoint the SIM is linked to.
    #[serde(default)]
    pub end_point_id: Option<NumOrStr>,
    /// ICCID.
    #[serde(default)]
    pub iccid: Option<String>,
    /// SIM status (12 Pre-Active).
    #[serde(default)]
    pub sim_status_id: Option<i64>,
    /// Attach status (1 Attached).
    #[serde(default)]
    pub sim_attach_status_id: Option<i64>,
    /// eSIM activation code.
    #[serde(default)]
    pub activation_code: Option<SimActivationCode>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SimRowIn {
    #[serde(default)]
    end_point_id: Option<NumOrStr>,
    #[serde(default, rename = "endpointId")]
    endpoint_id_lower: Option<NumOrStr>,
    #[serde(default)]
    iccid: Option<String>,
    #[serde(default)]
    sim_status_id: Option<i64>,
    #[serde(default)]
    sim_attach_status_id: Option<i64>,
    #[serde(default)]
    activation_code: Option<SimActivationCode>,
}

impl From<SimRowIn> for SimRow {
    fn from(w: SimRowIn) -> Self {
        Self {
            end_point_id: w.end_point_id.or(w.endpoint_id_lower),
            iccid: w.iccid,
            sim_status_id: w.sim_status_id,
            sim_attach_status_id: w.sim_attach_status_id,
            activation_code: w.activation_code,
        }
    }
}

/// A counter of an add-on (our choice): volumes in `unit` ("B", "KB", "MB", "GB").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CounterRow {
    /// Counter name.
    #[serde(default)]
    pub name: Option<String>,
    /// Unit of the values.
    #[serde(default)]
    pub unit: Option<String>,
    /// Allowance.
    #[serde(default)]
    pub total: Option<NumOrStr>,
    /// Used.
    #[serde(default)]
    pub used: Option<NumOrStr>,
    /// Remaining.
    #[serde(default)]
    pub remaining: Option<NumOrStr>,
}

/// An add-on instance row (SubscribeAddon answer and add-on details; our choice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "AddonRowIn")]
pub struct AddonRow {
    /// The add-on instance id (addonInstanceId).
    pub unique_id: NumOrStr,
    /// Endpoint.
    #[serde(default)]
    pub end_point_id: Option<NumOrStr>,
    /// Plan.
    #[serde(default)]
    pub plan_id: Option<NumOrStr>,
    /// Plan name.
    #[serde(default)]
    pub plan_name: Option<String>,
    /// Status text ("Active", "Subscribed", "Expired").
    #[serde(default)]
    pub status: Option<String>,
    /// Validity start, RFC 3339.
    #[serde(default)]
    pub start_date: Option<String>,
    /// Validity end, RFC 3339.
    #[serde(default)]
    pub end_date: Option<String>,
    /// Benefit description.
    #[serde(default)]
    pub benefit: Option<String>,
    /// Counters.
    #[serde(default)]
    pub counters: Vec<CounterRow>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddonRowIn {
    unique_id: NumOrStr,
    #[serde(default)]
    end_point_id: Option<NumOrStr>,
    #[serde(default, rename = "endpointId")]
    endpoint_id_lower: Option<NumOrStr>,
    #[serde(default)]
    plan_id: Option<NumOrStr>,
    #[serde(default)]
    plan_name: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    start_date: Option<String>,
    #[serde(default)]
    end_date: Option<String>,
    #[serde(default)]
    benefit: Option<String>,
    #[serde(default)]
    counters: Vec<CounterRow>,
}

impl From<AddonRowIn> for AddonRow {
    fn from(w: AddonRowIn) -> Self {
        Self {
            unique_id: w.unique_id,
            end_point_id: w.end_point_id.or(w.endpoint_id_lower),
            plan_id: w.plan_id,
            plan_name: w.plan_name,
            status: w.status,
            start_date: w.start_date,
            end_date: w.end_date,
            benefit: w.benefit,
            counters: w.counters,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(v: &Option<NumOrStr>) -> Option<String> {
        v.as_ref().map(NumOrStr::as_text)
    }

    #[test]
    fn sim_row_accepts_either_or_both_endpoint_spellings() {
        for body in [
            r#"{"endPointId":9001,"iccid":"8932440000000000001"}"#,
            r#"{"endpointId":"9001","iccid":"8932440000000000001"}"#,
            // Both spellings (a serde alias fails here with "duplicate field").
            r#"{"endPointId":9001,"endpointId":9001,"iccid":"8932440000000000001"}"#,
            r#"{"endpointId":"9001","endPointId":"9001"}"#,
        ] {
            let r: SimRow = serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(ep(&r.end_point_id).as_deref(), Some("9001"), "{body}");
        }
        let r: SimRow = serde_json::from_str(r#"{"endpointId":1,"endPointId":2}"#).unwrap();
        assert_eq!(ep(&r.end_point_id).as_deref(), Some("2"), "`endPointId` wins");
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["endPointId"], 2);
        assert!(j.get("endpointId").is_none());
    }

    #[test]
    fn addon_row_accepts_either_or_both_endpoint_spellings() {
        for body in [
            r#"{"uniqueId":"U1","endPointId":9001}"#,
            r#"{"uniqueId":"U1","endpointId":9001}"#,
            r#"{"uniqueId":"U1","endPointId":9001,"endpointId":9001,"counters":[]}"#,
        ] {
            let r: AddonRow = serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(ep(&r.end_point_id).as_deref(), Some("9001"), "{body}");
            assert_eq!(r.unique_id.as_text(), "U1");
        }
        assert!(
            serde_json::from_str::<AddonRow>(r#"{"endPointId":1}"#).is_err(),
            "uniqueId is required"
        );
    }

    #[test]
    fn request_bodies_accept_either_or_both_endpoint_spellings() {
        let b: RequestEnvelope<LifeCycleParam> = serde_json::from_str(
            r#"{"Request":{"endPointId":"7","endpointId":"7","requestParam":{"lifeCycle":"A","reason":"1"}}}"#,
        )
        .unwrap();
        assert_eq!(ep(&b.request.end_point_id).as_deref(), Some("7"));
        assert_eq!(b.request.request_param.life_cycle, "A");
        let b: RequestEnvelope<LifeCycleParam> = serde_json::from_str(
            r#"{"Request":{"endpointId":"7","requestParam":{"lifeCycle":"S","reason":"1"}}}"#,
        )
        .unwrap();
        assert_eq!(ep(&b.request.end_point_id).as_deref(), Some("7"));

        for body in [
            r#"{"endPointId":"7","planId":"P"}"#,
            r#"{"endpointId":"7","planId":"P"}"#,
            r#"{"endPointId":"7","endpointId":"7","planId":"P"}"#,
        ] {
            let p: SubscribeAddonParam = serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(p.end_point_id.as_text(), "7", "{body}");
        }
        let e = serde_json::from_str::<SubscribeAddonParam>(r#"{"planId":"P"}"#).unwrap_err();
        assert!(e.to_string().contains("endPointId"), "{e}");
        // What the client sends reads back the same.
        let p = SubscribeAddonParam {
            end_point_id: NumOrStr::Str("7".into()),
            plan_id: NumOrStr::Str("P".into()),
        };
        let j = serde_json::to_string(&p).unwrap();
        assert_eq!(j, r#"{"endPointId":"7","planId":"P"}"#);
        assert_eq!(serde_json::from_str::<SubscribeAddonParam>(&j).unwrap(), p);
    }

    #[test]
    fn login_tokens_at_the_top_or_in_the_envelope() {
        let top: LoginResponse =
            serde_json::from_str(r#"{"AccessToken":"a.b.c","RefreshToken":"r"}"#).unwrap();
        assert_eq!(top.access_token.expose(), "a.b.c");
        let nested: LoginResponse = serde_json::from_str(
            r#"{"Response":{"resultCode":0,"responseParam":{"AccessToken":"x.y.z","RefreshToken":"q"}}}"#,
        )
        .unwrap();
        assert_eq!(nested.access_token.expose(), "x.y.z");
        assert_eq!(nested.refresh_token.unwrap().expose(), "q");
        assert!(serde_json::from_str::<LoginResponse>(r#"{"Response":{"resultCode":0}}"#).is_err());
    }
}

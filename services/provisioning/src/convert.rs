//! Stored rows ↔ API messages: states, providers, timestamps.

use esim_proto::provisioning::v1 as pb;

use crate::entity::{addon, esim};
use crate::ids;

/// Runtime state of an eSIM, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A SIM/profile is assigned, not active yet.
    Selected,
    /// Active upstream.
    Activated,
    /// Handed over.
    Delivered,
    /// Suspended upstream.
    Suspended,
    /// Terminal: terminated.
    Terminated,
    /// Terminal: provisioning failed.
    Failed,
}

impl State {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Selected => "selected",
            Self::Activated => "activated",
            Self::Delivered => "delivered",
            Self::Suspended => "suspended",
            Self::Terminated => "terminated",
            Self::Failed => "failed",
        }
    }

    /// The stored text read back.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Selected,
            Self::Activated,
            Self::Delivered,
            Self::Suspended,
            Self::Terminated,
            Self::Failed,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// From the API enum (UNSPECIFIED has none).
    pub fn from_proto(value: i32) -> Option<Self> {
        match pb::EsimState::try_from(value).ok()? {
            pb::EsimState::Unspecified => None,
            pb::EsimState::Selected => Some(Self::Selected),
            pb::EsimState::Activated => Some(Self::Activated),
            pb::EsimState::Delivered => Some(Self::Delivered),
            pb::EsimState::Suspended => Some(Self::Suspended),
            pb::EsimState::Terminated => Some(Self::Terminated),
            pb::EsimState::Failed => Some(Self::Failed),
        }
    }

    fn to_proto(self) -> pb::EsimState {
        match self {
            Self::Selected => pb::EsimState::Selected,
            Self::Activated => pb::EsimState::Activated,
            Self::Delivered => pb::EsimState::Delivered,
            Self::Suspended => pb::EsimState::Suspended,
            Self::Terminated => pb::EsimState::Terminated,
            Self::Failed => pb::EsimState::Failed,
        }
    }
}

/// State of an add-on, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddonState {
    /// Subscribe sent, not confirmed.
    Pending,
    /// Subscribed.
    Active,
    /// Data used up.
    Exhausted,
    /// Validity over.
    Expired,
    /// Refused or failed.
    Failed,
    /// Ended with its eSIM.
    Cancelled,
}

impl AddonState {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Exhausted => "exhausted",
            Self::Expired => "expired",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    fn to_proto(s: &str) -> pb::AddonState {
        match s {
            "pending" => pb::AddonState::Pending,
            "active" => pb::AddonState::Active,
            "exhausted" => pb::AddonState::Exhausted,
            "expired" => pb::AddonState::Expired,
            "failed" => pb::AddonState::Failed,
            "cancelled" => pb::AddonState::Cancelled,
            _ => pb::AddonState::Unspecified,
        }
    }

    /// The state SFT reports in its status text (`Active`, `Expired`, `Exhausted`, ...).
    pub fn from_sft_status(status: Option<&str>) -> Self {
        match status.map(str::to_ascii_lowercase).as_deref() {
            Some("expired") => Self::Expired,
            Some("exhausted") | Some("depleted") => Self::Exhausted,
            _ => Self::Active,
        }
    }
}

pub use esim_runtime::api::{
    provider_code as provider_text, provider_from_code as provider_proto, timestamp,
};

/// Whether `DeliverEsim` can hand the eSIM over.
pub fn installation_ready(row: &esim::Model) -> bool {
    row.activation_code_enc.is_some()
        && row.step == "done"
        && !matches!(
            State::parse(&row.state),
            Some(State::Failed | State::Terminated) | None
        )
}

/// The API view of an eSIM (never its activation code).
pub fn esim(row: &esim::Model) -> pb::Esim {
    pb::Esim {
        name: ids::esim_name(&row.id),
        order: row.order_name.clone(),
        provider: provider_proto(&row.provider) as i32,
        iccid: row.iccid.clone().unwrap_or_default(),
        eid: row.eid.clone().unwrap_or_default(),
        upstream_order_code: row.upstream_order_code.clone().unwrap_or_default(),
        fms_order_no: row.fms_order_no.clone().unwrap_or_default(),
        sft_endpoint_id: row.sft_endpoint_id.clone().unwrap_or_default(),
        state: State::parse(&row.state).map_or(pb::EsimState::Unspecified, State::to_proto) as i32,
        state_reason: row.state_reason.clone(),
        installation_ready: installation_ready(row),
        create_time: Some(timestamp(row.create_time)),
        update_time: Some(timestamp(row.update_time)),
        activate_time: row.activate_time.map(timestamp),
        deliver_time: row.deliver_time.map(timestamp),
        terminate_time: row.terminate_time.map(timestamp),
    }
}

/// The API view of an add-on.
pub fn addon(row: &addon::Model) -> pb::Addon {
    pb::Addon {
        name: ids::addon_name(&row.esim_id, &row.id),
        unique_id: row.unique_id.clone().unwrap_or_default(),
        sft_plan_id: row.sft_plan_id.clone(),
        sft_endpoint_id: row.sft_endpoint_id.clone(),
        order: row.order_name.clone().unwrap_or_default(),
        state: AddonState::to_proto(&row.state) as i32,
        state_reason: row.state_reason.clone(),
        purchase_time: row.purchase_time.map(timestamp),
        validity_start_time: row.validity_start_time.map(timestamp),
        validity_end_time: row.validity_end_time.map(timestamp),
        update_time: Some(timestamp(row.update_time)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for value in 1..=6 {
            let state = State::from_proto(value).unwrap();
            assert_eq!(State::parse(state.as_str()), Some(state));
            assert_eq!(state.to_proto() as i32, value);
        }
        assert_eq!(State::from_proto(0), None);
        assert_eq!(State::from_proto(99), None);
        assert_eq!(AddonState::from_sft_status(Some("Expired")), AddonState::Expired);
        assert_eq!(AddonState::from_sft_status(Some("Active")), AddonState::Active);
    }
}

//! The order state machine's vocabulary: states, saga steps, providers, and their stored names.

use esim_proto::ordering::v1::OrderState;
use esim_proto::r#type::v1::Provider as PbProvider;

/// An order's state (stored by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Recorded; not placed upstream yet.
    Pending,
    /// FMS: pre-ordered, waiting for the payment report.
    PendingPayment,
    /// Placed or paid; the eSIM is being recorded.
    Provisioning,
    /// The eSIM is ready.
    Active,
    /// The eSIM is suspended.
    Suspended,
    /// The plan ended.
    Finished,
    /// The purchase failed.
    Failed,
    /// Cancelled by the caller.
    Cancelled,
    /// FMS payment window lapsed.
    Expired,
    /// An upstream create may or may not have happened.
    UnknownOutcome,
}

impl State {
    /// Every state.
    pub const ALL: [State; 10] = [
        State::Pending,
        State::PendingPayment,
        State::Provisioning,
        State::Active,
        State::Suspended,
        State::Finished,
        State::Failed,
        State::Cancelled,
        State::Expired,
        State::UnknownOutcome,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "PENDING",
            State::PendingPayment => "PENDING_PAYMENT",
            State::Provisioning => "PROVISIONING",
            State::Active => "ACTIVE",
            State::Suspended => "SUSPENDED",
            State::Finished => "FINISHED",
            State::Failed => "FAILED",
            State::Cancelled => "CANCELLED",
            State::Expired => "EXPIRED",
            State::UnknownOutcome => "UNKNOWN_OUTCOME",
        }
    }

    /// From the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The API enum.
    pub fn to_pb(self) -> OrderState {
        match self {
            State::Pending => OrderState::Pending,
            State::PendingPayment => OrderState::PendingPayment,
            State::Provisioning => OrderState::Provisioning,
            State::Active => OrderState::Active,
            State::Suspended => OrderState::Suspended,
            State::Finished => OrderState::Finished,
            State::Failed => OrderState::Failed,
            State::Cancelled => OrderState::Cancelled,
            State::Expired => OrderState::Expired,
            State::UnknownOutcome => OrderState::UnknownOutcome,
        }
    }

    /// From the API enum (`None` for UNSPECIFIED).
    pub fn from_pb(s: OrderState) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.to_pb() == s)
    }

    /// No further change is possible.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            State::Finished | State::Failed | State::Cancelled | State::Expired
        )
    }
}

/// The stored name of a state given as text, as the API enum (UNSPECIFIED if unknown).
pub fn state_pb(s: &str) -> OrderState {
    State::parse(s).map_or(OrderState::Unspecified, State::to_pb)
}

/// The saga's steps (stored by name in `saga_step`). A step whose name ends in `ING` is a
/// marker written right before an upstream call that cannot be repeated safely.
pub mod step {
    /// MP: place the order with `activationCode`.
    pub const MP_PLACE: &str = "MP_PLACE";
    /// MP: `activationCode` is being sent (persisted before the call).
    pub const MP_PLACING: &str = "MP_PLACING";
    /// FMS: make sure the customer has an FMS account.
    pub const FMS_ACCOUNT: &str = "FMS_ACCOUNT";
    /// FMS: reserve a profile with `preOrderPackage`.
    pub const FMS_PREORDER: &str = "FMS_PREORDER";
    /// FMS: `preOrderPackage` is being sent.
    pub const FMS_PREORDERING: &str = "FMS_PREORDERING";
    /// FMS: wait for the payment report until the deadline.
    pub const FMS_AWAIT_PAYMENT: &str = "FMS_AWAIT_PAYMENT";
    /// FMS: notify the payment result (once).
    pub const FMS_NOTIFY: &str = "FMS_NOTIFY";
    /// FMS: poll `queryOrdStatusAndEmail` until paid / failed / cancelled.
    pub const FMS_POLL: &str = "FMS_POLL";
    /// FMS: release a cancelled pre-order (a "payment failed" notification).
    pub const FMS_RELEASE: &str = "FMS_RELEASE";
    /// SFT: provisioning claims, activates and subscribes (idempotent by request id).
    pub const SFT_PROVISION: &str = "SFT_PROVISION";
    /// SFT: the provisioning call is under way (repeatable: idempotent by request id).
    pub const SFT_PROVISIONING: &str = "SFT_PROVISIONING";
    /// MP/FMS: provisioning records the eSIM (`CreateEsim`) while usage starts tracking it
    /// (ordering names the eSIM); one write stores both outcomes (a crash before it repeats
    /// both calls, each idempotent by its request id). For MP, both are first sent as MP
    /// answers, before the order stores the answer; the order is stored on this step only when
    /// `CreateEsim` failed.
    pub const RECORD_ESIM: &str = "RECORD_ESIM";
    /// Usage starts tracking the eSIM: after SFT provisioning, or again when usage could not be
    /// reached beside `CreateEsim`.
    pub const TRACK: &str = "TRACK";
    /// Nothing left for the saga.
    pub const DONE: &str = "DONE";
}

/// Which upstream (stored by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// LinksField Marketing Place.
    Mp,
    /// LinksField eSIM QR Mall.
    Fms,
    /// BICS SIM for Things.
    Sft,
}

impl Provider {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Mp => "MP",
            Provider::Fms => "FMS",
            Provider::Sft => "SFT",
        }
    }

    /// From the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "MP" => Some(Provider::Mp),
            "FMS" => Some(Provider::Fms),
            "SFT" => Some(Provider::Sft),
            _ => None,
        }
    }

    /// The API enum.
    pub fn to_pb(self) -> PbProvider {
        match self {
            Provider::Mp => PbProvider::Mp,
            Provider::Fms => PbProvider::Fms,
            Provider::Sft => PbProvider::Sft,
        }
    }

    /// From the API enum.
    pub fn from_pb(p: PbProvider) -> Option<Self> {
        match p {
            PbProvider::Mp => Some(Provider::Mp),
            PbProvider::Fms => Some(Provider::Fms),
            PbProvider::Sft => Some(Provider::Sft),
            PbProvider::Unspecified => None,
        }
    }

    /// The first saga step of an order of this provider.
    pub fn first_step(self) -> &'static str {
        match self {
            Provider::Mp => step::MP_PLACE,
            Provider::Fms => step::FMS_ACCOUNT,
            Provider::Sft => step::SFT_PROVISION,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
            assert_eq!(State::from_pb(s.to_pb()), Some(s));
        }
        assert_eq!(state_pb("nope"), OrderState::Unspecified);
        assert!(State::Expired.is_terminal() && !State::UnknownOutcome.is_terminal());
    }
}

//! `esim.provisioning.v1.ProvisioningService`.

use std::sync::Arc;

use esim_domain::{ActivationCode, Eid, Iccid};
use esim_proto::provisioning::v1::{self as pb, provisioning_service_server::ProvisioningService};
use esim_proto::r#type::v1::Provider;
use esim_runtime::{api::page_size, call_context::request_id};
use esim_upstream::mp::MpClient;
use esim_upstream::mp::wire::SwitchButton;
use esim_upstream::sft::{LifeCycle, SftClient};
use prost::Message;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tonic::{Request, Response, Status};

use crate::config::Settings;
use crate::convert::{self, AddonState, State};
use crate::crypto::CodeCipher;
use crate::entity::{addon, esim};
use crate::error::{ProvisioningError, Result};
use crate::{ids, qr, store};

/// At most this many active add-ons per endpoint (an SFT limit).
pub const MAX_ACTIVE_ADDONS: usize = 15;

pub(crate) struct Inner {
    pub db: DatabaseConnection,
    pub cipher: CodeCipher,
    pub sft: SftClient,
    pub mp: MpClient,
    pub settings: Settings,
}

/// The gRPC service; cheap to clone.
#[derive(Clone)]
pub struct Provisioning {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Provisioning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provisioning")
            .field("cipher", &self.inner.cipher)
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// A lifecycle change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Activate,
    Suspend,
    Resume,
    Terminate,
}

impl Change {
    fn method(self) -> &'static str {
        match self {
            Self::Activate => "ActivateEsim",
            Self::Suspend => "SuspendEsim",
            Self::Resume => "ResumeEsim",
            Self::Terminate => "TerminateEsim",
        }
    }
}

impl Provisioning {
    /// The service over its database, key ring and upstream clients.
    pub fn new(
        db: DatabaseConnection,
        cipher: CodeCipher,
        sft: SftClient,
        mp: MpClient,
        settings: Settings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                cipher,
                sft,
                mp,
                settings,
            }),
        }
    }

    async fn load(&self, field: &str, name: &str) -> Result<esim::Model> {
        let id = ids::parse_esim_name(field, name)?;
        store::esim(&self.inner.db, &id)
            .await?
            .ok_or_else(|| ProvisioningError::NotFound(ids::esim_name(&id)))
    }

    async fn create(&self, req: pb::CreateEsimRequest) -> Result<esim::Model> {
        ids::validate_request_id(&req.request_id, false)?;
        let esim_in = req
            .esim
            .ok_or_else(|| ProvisioningError::invalid("esim", "required"))?;
        ids::validate_order("esim.order", &esim_in.order)?;
        let provider = match Provider::try_from(esim_in.provider) {
            Ok(Provider::Mp) => "MP",
            Ok(Provider::Fms) => "FMS",
            Ok(Provider::Sft) => {
                return Err(ProvisioningError::invalid(
                    "esim.provider",
                    "SFT eSIMs are claimed from the pool by ProvisionEsim",
                ));
            }
            _ => return Err(ProvisioningError::invalid("esim.provider", "must be MP or FMS")),
        };
        let iccid: Iccid = esim_in
            .iccid
            .parse()
            .map_err(|e| ProvisioningError::invalid("esim.iccid", format!("{e}")))?;
        let eid = match esim_in.eid.trim() {
            "" => None,
            text => Some(
                text.parse::<Eid>()
                    .map_err(|e| ProvisioningError::invalid("esim.eid", format!("{e}")))?,
            ),
        };
        if req.activation_code.trim().is_empty() {
            return Err(ProvisioningError::invalid("activation_code", "required"));
        }
        let code: ActivationCode = req
            .activation_code
            .parse()
            .map_err(|e| ProvisioningError::invalid("activation_code", format!("{e}")))?;
        let reference = |field: &str, value: &str, required: bool| -> Result<Option<String>> {
            let value = value.trim();
            if value.is_empty() {
                return if required {
                    Err(ProvisioningError::invalid(
                        field,
                        format!("required for {provider} eSIMs"),
                    ))
                } else {
                    Ok(None)
                };
            }
            if value.len() > 128 || value.chars().any(char::is_control) {
                return Err(ProvisioningError::invalid(
                    field,
                    "at most 128 printable characters",
                ));
            }
            Ok(Some(value.to_owned()))
        };
        let order_code = reference(
            "esim.upstream_order_code",
            &esim_in.upstream_order_code,
            provider == "MP",
        )?;
        let fms_order_no = reference("esim.fms_order_no", &esim_in.fms_order_no, provider == "FMS")?;
        let chosen_id = ids::parse_new_id("esim_id", &req.esim_id)?;

        let mut hashed = vec![
            "CreateEsim",
            &esim_in.order,
            provider,
            iccid.as_str(),
            eid.as_ref().map_or("", Eid::as_str),
            order_code.as_deref().unwrap_or(""),
            fms_order_no.as_deref().unwrap_or(""),
            code.expose(),
        ];
        // Only when given, so requests stored before the field existed replay as before.
        hashed.extend(chosen_id.as_deref());
        let hash = ids::hash(&hashed);
        let db = &self.inner.db;
        let replay = |row: esim::Model| {
            if row.request_hash == hash {
                Ok(row)
            } else {
                Err(ProvisioningError::AlreadyExists(format!(
                    "request_id {:?} was used for another request",
                    req.request_id
                )))
            }
        };
        // Inserted first (one statement for a new eSIM): a replay conflicts on its request id
        // and is answered from the stored row below.
        let now = store::now();
        let id = chosen_id.clone().unwrap_or_else(ids::new_id);
        let row = esim::Model {
            activation_code_enc: Some(self.inner.cipher.encrypt(&code, &id)?),
            id,
            order_name: esim_in.order.clone(),
            provider: provider.into(),
            iccid: Some(iccid.to_string()),
            eid: eid.map(|e| e.to_string()),
            sft_endpoint_id: None,
            upstream_order_code: order_code,
            fms_order_no,
            state: State::Selected.as_str().into(),
            state_reason: String::new(),
            failure_code: None,
            step: "done".into(),
            sft_plan_id: None,
            request_id: req.request_id.clone(),
            request_hash: hash.clone(),
            lease_until: None,
            create_time: now,
            update_time: now,
            activate_time: None,
            deliver_time: None,
            terminate_time: None,
        };
        if store::insert_esim(db, row.clone()).await? {
            tracing::info!(esim = %row.id, order = %row.order_name, provider, iccid = %iccid, "eSIM recorded");
            return Ok(row);
        }
        if let Some(existing) = store::esim_by_request(db, &req.request_id).await? {
            return replay(existing);
        }
        if let Some(id) = &chosen_id
            && store::esim(db, id).await?.is_some()
        {
            return Err(ProvisioningError::AlreadyExists(format!(
                "{} exists already",
                ids::esim_name(id)
            )));
        }
        let other = store::live_esim_of_order(db, &esim_in.order).await?;
        Err(ProvisioningError::AlreadyExists(match other {
            Some(o) => format!("{} already has an eSIM: {}", esim_in.order, ids::esim_name(&o.id)),
            None => format!("{} already has an eSIM", esim_in.order),
        }))
    }

    async fn list_esims(&self, req: pb::ListEsimsRequest) -> Result<pb::ListEsimsResponse> {
        let size = usize::try_from(page_size(req.page_size, 50, 500)?).unwrap_or(500);
        let mut query = esim::Entity::find();
        let mut filters = Vec::new();
        if !req.order.is_empty() {
            ids::validate_order("order", &req.order)?;
            query = query.filter(esim::Column::OrderName.eq(req.order.clone()));
            filters.push(format!("order={}", req.order));
        }
        if !req.states.is_empty() {
            let mut states = Vec::new();
            for (i, value) in req.states.iter().enumerate() {
                let state = State::from_proto(*value).ok_or_else(|| {
                    ProvisioningError::invalid(format!("states[{i}]"), "not a valid eSIM state")
                })?;
                states.push(state.as_str());
            }
            states.sort_unstable();
            states.dedup();
            filters.push(format!("states={}", states.join(",")));
            query = query.filter(esim::Column::State.is_in(states));
        }
        match Provider::try_from(req.provider) {
            Ok(Provider::Unspecified) => {}
            Ok(p) => {
                let text = convert::provider_text(p).unwrap_or_default();
                query = query.filter(esim::Column::Provider.eq(text));
                filters.push(format!("provider={text}"));
            }
            Err(_) => return Err(ProvisioningError::invalid("provider", "not a valid provider")),
        }
        if !req.iccid.is_empty() {
            let iccid: Iccid = req
                .iccid
                .parse()
                .map_err(|e| ProvisioningError::invalid("iccid", format!("{e}")))?;
            query = query.filter(esim::Column::Iccid.eq(iccid.to_string()));
            filters.push(format!("iccid={iccid}"));
        }
        let filters = filters.join("&");
        if let Some(last) = ids::parse_page_token(&req.page_token, &filters)? {
            query = query.filter(esim::Column::Id.lt(last));
        }
        // Ids are ULIDs: descending id is newest first, ties impossible.
        let mut rows = query
            .order_by_desc(esim::Column::Id)
            .limit(size as u64 + 1)
            .all(&self.inner.db)
            .await?;
        let next_page_token = if rows.len() > size {
            rows.truncate(size);
            rows.last()
                .map(|r| ids::page_token(&filters, &r.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::ListEsimsResponse {
            esims: rows.iter().map(convert::esim).collect(),
            next_page_token,
        })
    }

    /// Activate / suspend / resume / terminate.
    async fn change(
        &self,
        change: Change,
        request_id: &str,
        name: &str,
        reason: &str,
        rid: &str,
    ) -> Result<pb::Esim> {
        ids::validate_request_id(request_id, true)?;
        ids::parse_esim_name("name", name)?;
        esim_runtime::api::text(reason, "reason", esim_domain::TextRule::optional(500))?;
        let key = format!("{}:{request_id}", change.method());
        let hash = ids::hash(&[change.method(), name, reason]);
        let db = &self.inner.db;
        if !request_id.is_empty()
            && let Some((stored_hash, response)) = store::idempotent_answer(db, &key).await?
        {
            if stored_hash != hash {
                return Err(ProvisioningError::AlreadyExists(format!(
                    "request_id {request_id:?} was used for another request"
                )));
            }
            return pb::Esim::decode(response.as_slice())
                .map_err(|e| ProvisioningError::Internal(format!("stored answer: {e}")));
        }

        let mut row = self.load("name", name).await?;
        let state = State::parse(&row.state)
            .ok_or_else(|| ProvisioningError::Internal(format!("stored state {:?}", row.state)))?;
        let label = ids::esim_name(&row.id);
        let refuse = |why: String| Err(ProvisioningError::FailedPrecondition(format!("{label}: {why}")));
        let provider = row.provider.clone();
        // Preconditions first: an illegal transition never reaches an upstream.
        match change {
            Change::Activate => {
                if provider != "MP" {
                    return refuse(format!(
                        "{provider} eSIMs have no separate activation (SFT activates on provision)"
                    ));
                }
                if !matches!(state, State::Selected | State::Delivered) {
                    return refuse(format!("cannot activate an eSIM that is {}", state.as_str()));
                }
                if row.activate_time.is_some() {
                    return refuse("it is already activated upstream".into());
                }
            }
            Change::Suspend => {
                if !matches!(state, State::Activated | State::Delivered) {
                    return refuse(format!("cannot suspend an eSIM that is {}", state.as_str()));
                }
            }
            Change::Resume => {
                if state != State::Suspended {
                    return refuse(format!("cannot resume an eSIM that is {}", state.as_str()));
                }
            }
            Change::Terminate => {
                if matches!(state, State::Terminated | State::Failed) {
                    return refuse(format!("cannot terminate an eSIM that is {}", state.as_str()));
                }
                if row.step != "done" {
                    return refuse("its provision is still running".into());
                }
            }
        }
        if provider == "FMS" {
            return refuse("FMS offers no lifecycle calls for an eSIM".into());
        }

        match provider.as_str() {
            "MP" => {
                let order_code = row.upstream_order_code.clone().ok_or_else(|| {
                    ProvisioningError::FailedPrecondition(format!("{label}: no MP order code"))
                })?;
                let button = match change {
                    Change::Activate => SwitchButton::On,
                    Change::Suspend => SwitchButton::Suspend,
                    Change::Resume => SwitchButton::Restart,
                    Change::Terminate => SwitchButton::Off,
                };
                self.inner.mp.switch_order(&order_code, button, rid).await?;
            }
            "SFT" => {
                let endpoint = row.sft_endpoint_id.clone().ok_or_else(|| {
                    ProvisioningError::FailedPrecondition(format!("{label}: no SFT endpoint"))
                })?;
                // SFT knows Active (A) and Suspended (S); ending an eSIM suspends its endpoint
                // for good (the SIM is never put back into the pool).
                let target = match change {
                    Change::Resume => LifeCycle::Active,
                    _ => LifeCycle::Suspended,
                };
                self.inner
                    .sft
                    .change_life_cycle(&endpoint, target, "1", rid)
                    .await?;
            }
            other => return Err(ProvisioningError::Internal(format!("stored provider {other:?}"))),
        }

        let now = store::now();
        let old_state = row.state.clone();
        let new_state = match change {
            Change::Activate | Change::Resume if state == State::Delivered => State::Delivered,
            Change::Activate | Change::Resume => {
                if row.deliver_time.is_some() {
                    State::Delivered
                } else {
                    State::Activated
                }
            }
            Change::Suspend => State::Suspended,
            Change::Terminate => State::Terminated,
        };
        row.state = new_state.as_str().into();
        row.state_reason = reason.trim().to_owned();
        row.update_time = now;
        if matches!(change, Change::Activate | Change::Resume) && row.activate_time.is_none() {
            row.activate_time = Some(now);
        }
        if change == Change::Terminate {
            row.terminate_time = Some(now);
        }
        if !store::save_esim_if_state(db, &row, &old_state).await? {
            return Err(ProvisioningError::Aborted(format!(
                "{label} changed while this call ran; read it again"
            )));
        }
        if change == Change::Terminate {
            addon::Entity::update_many()
                .col_expr(addon::Column::State, Expr::value(AddonState::Cancelled.as_str()))
                .col_expr(addon::Column::StateReason, Expr::value("the eSIM was terminated"))
                .col_expr(addon::Column::UpdateTime, Expr::value(now))
                .filter(addon::Column::EsimId.eq(row.id.clone()))
                .filter(
                    addon::Column::State.is_in([AddonState::Active.as_str(), AddonState::Pending.as_str()]),
                )
                .exec(db)
                .await?;
        }
        tracing::info!(esim = %row.id, change = change.method(), from = %old_state, to = %row.state, "eSIM lifecycle changed");
        let answer = convert::esim(&row);
        if !request_id.is_empty() {
            store::store_answer(db, &key, &hash, answer.encode_to_vec()).await?;
        }
        Ok(answer)
    }

    async fn deliver(&self, req: pb::DeliverEsimRequest) -> Result<pb::EsimInstallation> {
        ids::validate_request_id(&req.request_id, true)?;
        let size = match req.qr_code_size_pixels {
            0 => qr::DEFAULT_SIZE,
            s if (qr::MIN_SIZE as i32..=qr::MAX_SIZE as i32).contains(&s) => s as u32,
            _ => {
                return Err(ProvisioningError::invalid(
                    "qr_code_size_pixels",
                    format!("must be 0 or {}-{}", qr::MIN_SIZE, qr::MAX_SIZE),
                ));
            }
        };
        let mut row = self.load("name", &req.name).await?;
        let label = ids::esim_name(&row.id);
        let state = State::parse(&row.state)
            .ok_or_else(|| ProvisioningError::Internal(format!("stored state {:?}", row.state)))?;
        if matches!(state, State::Failed | State::Terminated) {
            return Err(ProvisioningError::FailedPrecondition(format!(
                "{label} is {}: nothing to hand over",
                state.as_str()
            )));
        }
        let Some(stored) = row.activation_code_enc.clone().filter(|_| row.step == "done") else {
            return Err(ProvisioningError::FailedPrecondition(format!(
                "{label}: its activation code is not known yet"
            )));
        };
        let code = self.inner.cipher.decrypt(&stored, &row.id)?;
        let installation = |row: &esim::Model| -> Result<pb::EsimInstallation> {
            Ok(pb::EsimInstallation {
                esim: label.clone(),
                iccid: row.iccid.clone().unwrap_or_default(),
                activation_code: code.expose().to_owned(),
                smdp_address: code.smdp_address().to_owned(),
                matching_id: code.matching_id().to_owned(),
                confirmation_code_required: code.confirmation_code_required(),
                qr_code_png: qr::png(&code, size)?,
                qr_code_svg: qr::svg(&code)?,
                ios_install_url: qr::ios_install_url(&code),
                android_install_url: qr::android_install_url(&code),
                deliver_time: row.deliver_time.map(convert::timestamp),
            })
        };
        let now = store::now();
        let old_state = row.state.clone();
        if row.deliver_time.is_none() {
            row.deliver_time = Some(now);
        }
        if matches!(state, State::Selected | State::Activated) {
            row.state = State::Delivered.as_str().into();
        }
        if row.state != old_state || row.deliver_time == Some(now) {
            row.update_time = now;
            if !store::save_esim_if_state(&self.inner.db, &row, &old_state).await? {
                return Err(ProvisioningError::Aborted(format!(
                    "{label} changed while this call ran; try again"
                )));
            }
            tracing::info!(esim = %row.id, "eSIM handed over");
        }
        installation(&row)
    }

    async fn create_addon(&self, req: pb::CreateAddonRequest, rid: &str) -> Result<addon::Model> {
        ids::validate_request_id(&req.request_id, false)?;
        ids::parse_esim_name("parent", &req.parent)?;
        let addon_in = req
            .addon
            .ok_or_else(|| ProvisioningError::invalid("addon", "required"))?;
        let plan = addon_in.sft_plan_id.trim().to_owned();
        ids::validate_sft_plan_id("addon.sft_plan_id", &plan)?;
        if !addon_in.order.is_empty() {
            ids::validate_order("addon.order", &addon_in.order)?;
        }
        let hash = ids::hash(&["CreateAddon", &req.parent, &plan, &addon_in.order]);
        let db = &self.inner.db;
        let replay = |row: addon::Model| -> Result<addon::Model> {
            if row.request_hash != hash {
                return Err(ProvisioningError::AlreadyExists(format!(
                    "request_id {:?} was used for another request",
                    req.request_id
                )));
            }
            if row.state == AddonState::Failed.as_str() {
                return Err(ProvisioningError::FailedPrecondition(format!(
                    "{}: {}",
                    ids::addon_name(&row.esim_id, &row.id),
                    row.state_reason
                )));
            }
            Ok(row)
        };
        if let Some(row) = store::addon_by_request(db, &req.request_id).await? {
            return replay(row);
        }
        let esim = self.load("parent", &req.parent).await?;
        let label = ids::esim_name(&esim.id);
        if esim.provider != "SFT" {
            return Err(ProvisioningError::FailedPrecondition(format!(
                "{label} is an {} eSIM: add-ons are SFT's",
                esim.provider
            )));
        }
        let state = State::parse(&esim.state);
        if !matches!(
            state,
            Some(State::Activated | State::Delivered | State::Suspended)
        ) {
            return Err(ProvisioningError::FailedPrecondition(format!(
                "{label} is {}: add-ons need an ACTIVATED, DELIVERED or SUSPENDED eSIM",
                esim.state
            )));
        }
        let endpoint = esim
            .sft_endpoint_id
            .clone()
            .ok_or_else(|| ProvisioningError::FailedPrecondition(format!("{label}: no SFT endpoint")))?;
        let now = store::now();
        if store::active_addons_of_endpoint(db, &endpoint, now).await? >= MAX_ACTIVE_ADDONS {
            return Err(ProvisioningError::FailedPrecondition(format!(
                "{label} has {MAX_ACTIVE_ADDONS} active add-ons, SFT's maximum"
            )));
        }
        let pending = addon::Model {
            id: ids::new_id(),
            esim_id: esim.id.clone(),
            unique_id: None,
            sft_endpoint_id: endpoint.clone(),
            sft_plan_id: plan.clone(),
            order_name: Some(addon_in.order.clone()).filter(|o| !o.is_empty()),
            state: AddonState::Pending.as_str().into(),
            state_reason: String::new(),
            request_id: req.request_id.clone(),
            request_hash: hash.clone(),
            purchase_time: None,
            validity_start_time: None,
            validity_end_time: None,
            create_time: now,
            update_time: now,
        };
        if !store::insert_addon(db, pending.clone()).await? {
            // Same request id raced us: that call subscribes.
            let row = store::addon_by_request(db, &req.request_id)
                .await?
                .ok_or_else(|| ProvisioningError::Aborted("the add-on is being created; retry".into()))?;
            return replay(row);
        }
        let mut row = pending;
        // Sent once: SubscribeAddon is not idempotent upstream.
        let result = match self.inner.sft.subscribe_addon(&endpoint, &plan, rid).await {
            Ok(info) => Ok(info),
            Err(err) if err.outcome_unknown() => {
                match self.find_unrecorded_addon(&endpoint, &plan, rid).await {
                    Ok(Some(info)) => Ok(info),
                    _ => Err(err),
                }
            }
            Err(err) => Err(err),
        };
        let now = store::now();
        match result {
            Ok(info) => {
                crate::provision::apply_addon_info(&mut row, &info, now);
                store::save_addon(db, &row).await?;
                tracing::info!(esim = %esim.id, addon = %row.id, plan = %plan, "add-on subscribed");
                Ok(row)
            }
            Err(err) => {
                row.state = AddonState::Failed.as_str().into();
                row.state_reason = format!("SubscribeAddon failed: {err}");
                row.update_time = now;
                store::save_addon(db, &row).await?;
                Err(err.into())
            }
        }
    }

    async fn list_addons(&self, req: pb::ListAddonsRequest) -> Result<pb::ListAddonsResponse> {
        let size = usize::try_from(page_size(req.page_size, 50, 100)?).unwrap_or(100);
        let esim = self.load("parent", &req.parent).await?;
        let mut query = addon::Entity::find().filter(addon::Column::EsimId.eq(esim.id.clone()));
        if let Some(last) = ids::parse_page_token(&req.page_token, &esim.id)? {
            query = query.filter(addon::Column::Id.lt(last));
        }
        let mut rows = query
            .order_by_desc(addon::Column::Id)
            .limit(size as u64 + 1)
            .all(&self.inner.db)
            .await?;
        let next_page_token = if rows.len() > size {
            rows.truncate(size);
            rows.last()
                .map(|r| ids::page_token(&esim.id, &r.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::ListAddonsResponse {
            addons: rows.iter().map(convert::addon).collect(),
            next_page_token,
        })
    }
}

#[tonic::async_trait]
impl ProvisioningService for Provisioning {
    async fn create_esim(
        &self,
        request: Request<pb::CreateEsimRequest>,
    ) -> Result<Response<pb::Esim>, Status> {
        let row = self.create(request.into_inner()).await?;
        Ok(Response::new(convert::esim(&row)))
    }

    async fn provision_esim(
        &self,
        request: Request<pb::ProvisionEsimRequest>,
    ) -> Result<Response<pb::Esim>, Status> {
        let rid = request_id(&request);
        let row = self.provision(request.into_inner(), rid.as_str()).await?;
        Ok(Response::new(convert::esim(&row)))
    }

    async fn get_esim(&self, request: Request<pb::GetEsimRequest>) -> Result<Response<pb::Esim>, Status> {
        let row = self.load("name", &request.get_ref().name).await?;
        Ok(Response::new(convert::esim(&row)))
    }

    async fn list_esims(
        &self,
        request: Request<pb::ListEsimsRequest>,
    ) -> Result<Response<pb::ListEsimsResponse>, Status> {
        Ok(Response::new(self.list_esims(request.into_inner()).await?))
    }

    async fn activate_esim(
        &self,
        request: Request<pb::ActivateEsimRequest>,
    ) -> Result<Response<pb::Esim>, Status> {
        let rid = request_id(&request);
        let req = request.into_inner();
        let esim = self
            .change(Change::Activate, &req.request_id, &req.name, "", rid.as_str())
            .await?;
        Ok(Response::new(esim))
    }

    async fn suspend_esim(
        &self,
        request: Request<pb::SuspendEsimRequest>,
    ) -> Result<Response<pb::Esim>, Status> {
        let rid = request_id(&request);
        let req = request.into_inner();
        let esim = self
            .change(
                Change::Suspend,
                &req.request_id,
                &req.name,
                &req.reason,
                rid.as_str(),
            )
            .await?;
        Ok(Response::new(esim))
    }

    async fn resume_esim(
        &self,
        request: Request<pb::ResumeEsimRequest>,
    ) -> Result<Response<pb::Esim>, Status> {
        let rid = request_id(&request);
        let req = request.into_inner();
        let esim = self
            .change(Change::Resume, &req.request_id, &req.name, "", rid.as_str())
            .await?;
        Ok(Response::new(esim))
    }

    async fn terminate_esim(
        &self,
        request: Request<pb::TerminateEsimRequest>,
    ) -> Result<Response<pb::Esim>, Status> {
        let rid = request_id(&request);
        let req = request.into_inner();
        let esim = self
            .change(
                Change::Terminate,
                &req.request_id,
                &req.name,
                &req.reason,
                rid.as_str(),
            )
            .await?;
        Ok(Response::new(esim))
    }

    async fn deliver_esim(
        &self,
        request: Request<pb::DeliverEsimRequest>,
    ) -> Result<Response<pb::EsimInstallation>, Status> {
        Ok(Response::new(self.deliver(request.into_inner()).await?))
    }

    async fn create_addon(
        &self,
        request: Request<pb::CreateAddonRequest>,
    ) -> Result<Response<pb::Addon>, Status> {
        let rid = request_id(&request);
        let row = self.create_addon(request.into_inner(), rid.as_str()).await?;
        Ok(Response::new(convert::addon(&row)))
    }

    async fn get_addon(&self, request: Request<pb::GetAddonRequest>) -> Result<Response<pb::Addon>, Status> {
        let (esim, id) = ids::parse_addon_name("name", &request.get_ref().name)?;
        let row = store::addon(&self.inner.db, &esim, &id)
            .await
            .map_err(Status::from)?
            .ok_or_else(|| ProvisioningError::NotFound(ids::addon_name(&esim, &id)))?;
        Ok(Response::new(convert::addon(&row)))
    }

    async fn list_addons(
        &self,
        request: Request<pb::ListAddonsRequest>,
    ) -> Result<Response<pb::ListAddonsResponse>, Status> {
        Ok(Response::new(self.list_addons(request.into_inner()).await?))
    }
}

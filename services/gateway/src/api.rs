//! `esim.gateway.v1.GatewayService`: API keys. Requests are validated here (INVALID_ARGUMENT
//! naming the field, nothing changed), the work is done by [`crate::store`], and every change
//! is followed by a cache refresh so it takes effect on this replica at once (on the others
//! within the refresh interval). The ADMIN scope is enforced by [`crate::auth::Authorized`]
//! around this service.

use std::sync::Arc;

use esim_proto::gateway::v1 as pb;
use esim_proto::gateway::v1::gateway_service_server::{GatewayService, GatewayServiceServer};
use esim_runtime::api::{page_size, page_token, resource_id};
use sea_orm::DatabaseConnection;
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};

use crate::cache::{Caller, KeyCache};
use crate::error::{GatewayError, Result};
use crate::store::{self, KeySpec, KeyUpdate, RequestKey};

/// The fields `UpdateApiKey` can change.
const UPDATABLE: [&str; 3] = ["display_name", "scopes", "rate_limit"];

/// Where the next page of `ListApiKeys` starts: after this key id.
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    id: String,
}

/// The service implementation. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GatewayApi {
    db: DatabaseConnection,
    keys: Arc<KeyCache>,
}

impl GatewayApi {
    /// The API over `db`, refreshing `keys` after every change.
    pub fn new(db: DatabaseConnection, keys: Arc<KeyCache>) -> Self {
        Self { db, keys }
    }

    /// The gRPC service (wrap it in [`crate::auth::Authorized`] before serving it).
    pub fn into_service(self) -> GatewayServiceServer<Self> {
        GatewayServiceServer::new(self)
    }

    /// Makes a change visible to authentication on this replica now. The change is committed
    /// either way; if the refresh fails, the background refresh catches up.
    async fn changed(&self) {
        if let Err(err) = self.keys.refresh(&self.db).await {
            tracing::warn!(error = %err, "API key changed, but the cache refresh failed; the next one picks it up");
        }
    }

    async fn create(&self, by: &str, req: pb::CreateApiKeyRequest) -> Result<pb::CreateApiKeyResponse> {
        let key = req
            .api_key
            .as_ref()
            .ok_or_else(|| GatewayError::invalid("api_key", "is required"))?;
        let spec = KeySpec::from_proto(key, "api_key")?;
        let request = RequestKey::new(
            "CreateApiKey",
            &req.request_id,
            &pb::CreateApiKeyRequest {
                request_id: String::new(),
                ..req.clone()
            },
        )?;
        let created = store::create(&self.db, &spec, request.as_ref()).await?;
        tracing::info!(
            api_key = %created.api_key.name,
            key_prefix = %created.api_key.key_prefix,
            scopes = %spec.scopes,
            by,
            "API key created"
        );
        self.changed().await;
        Ok(pb::CreateApiKeyResponse {
            api_key: Some(created.api_key),
            key: created.key,
        })
    }

    async fn get(&self, req: pb::GetApiKeyRequest) -> Result<pb::ApiKey> {
        let id = resource_id(&req.name, store::COLLECTION, "name", store::is_key_id)?;
        store::to_proto(&store::get(&self.db, id).await?)
    }

    async fn list(&self, req: pb::ListApiKeysRequest) -> Result<pb::ListApiKeysResponse> {
        let size = page_size(req.page_size, 100, 500)?;
        let fingerprint = page_token::fingerprint(&format!("apiKeys|show_revoked={}", req.show_revoked));
        let cursor = page_token::decode::<Cursor>(&req.page_token, &fingerprint)?;
        let mut rows = store::list(
            &self.db,
            req.show_revoked,
            cursor.as_ref().map(|c| c.id.as_str()),
            size + 1,
        )
        .await?;
        let more = rows.len() as u64 > size;
        rows.truncate(usize::try_from(size).unwrap_or(usize::MAX));
        let next_page_token = match rows.last() {
            Some(last) if more => page_token::encode(&fingerprint, &Cursor { id: last.id.clone() }),
            _ => String::new(),
        };
        Ok(pb::ListApiKeysResponse {
            api_keys: rows.iter().map(store::to_proto).collect::<Result<_>>()?,
            next_page_token,
        })
    }

    async fn update(&self, by: &str, req: pb::UpdateApiKeyRequest) -> Result<pb::ApiKey> {
        let key = req
            .api_key
            .as_ref()
            .ok_or_else(|| GatewayError::invalid("api_key", "is required"))?;
        let id = resource_id(&key.name, store::COLLECTION, "api_key.name", store::is_key_id)?;
        let paths = update_paths(req.update_mask.as_ref())?;
        let mut update = KeyUpdate::default();
        for path in paths {
            match path {
                "display_name" => {
                    update.display_name =
                        Some(store::display_name(&key.display_name, "api_key.display_name")?);
                }
                "scopes" => update.scopes = Some(store::scopes(&key.scopes, "api_key.scopes")?),
                _ => {
                    update.rate_limit =
                        Some(store::rate_limit(key.rate_limit.as_ref(), "api_key.rate_limit")?);
                }
            }
        }
        let request = RequestKey::new(
            "UpdateApiKey",
            &req.request_id,
            &pb::UpdateApiKeyRequest {
                request_id: String::new(),
                ..req.clone()
            },
        )?;
        let updated = store::update(&self.db, id, &update, request.as_ref()).await?;
        tracing::info!(api_key = %updated.name, key_prefix = %updated.key_prefix, ?update, by, "API key updated");
        self.changed().await;
        Ok(updated)
    }

    async fn revoke(&self, by: &str, req: pb::RevokeApiKeyRequest) -> Result<pb::ApiKey> {
        let id = resource_id(&req.name, store::COLLECTION, "name", store::is_key_id)?;
        let request = RequestKey::new(
            "RevokeApiKey",
            &req.request_id,
            &pb::RevokeApiKeyRequest {
                request_id: String::new(),
                ..req.clone()
            },
        )?;
        let revoked = store::revoke(&self.db, id, request.as_ref()).await?;
        tracing::info!(api_key = %revoked.name, key_prefix = %revoked.key_prefix, by, "API key revoked (or already was)");
        self.changed().await;
        Ok(revoked)
    }
}

/// The fields an update mask names: at least one, each updatable; `*` is all of them.
fn update_paths(mask: Option<&prost_types::FieldMask>) -> Result<Vec<&'static str>> {
    let paths = mask.map(|m| m.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() {
        return Err(GatewayError::invalid(
            "update_mask",
            format!(
                "is required: name the fields to update ({} or *)",
                UPDATABLE.join(", ")
            ),
        ));
    }
    let mut fields = Vec::new();
    for path in paths {
        if path == "*" {
            return Ok(UPDATABLE.to_vec());
        }
        let field = UPDATABLE.into_iter().find(|f| f == path).ok_or_else(|| {
            GatewayError::invalid(
                "update_mask",
                format!("{path:?} cannot be updated; allowed: {}, *", UPDATABLE.join(", ")),
            )
        })?;
        if !fields.contains(&field) {
            fields.push(field);
        }
    }
    Ok(fields)
}

type Answer<T> = std::result::Result<Response<T>, Status>;

fn answer<T>(result: Result<T>) -> Answer<T> {
    result.map(Response::new).map_err(Status::from)
}

/// The authenticated caller's key, for the audit log.
fn caller<T>(request: &Request<T>) -> Arc<str> {
    request
        .extensions()
        .get::<Caller>()
        .map_or_else(|| Arc::from("unauthenticated"), |c| c.name.clone())
}

#[tonic::async_trait]
impl GatewayService for GatewayApi {
    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Answer<pb::CreateApiKeyResponse> {
        let by = caller(&request);
        answer(self.create(&by, request.into_inner()).await)
    }

    async fn get_api_key(&self, request: Request<pb::GetApiKeyRequest>) -> Answer<pb::ApiKey> {
        answer(self.get(request.into_inner()).await)
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Answer<pb::ListApiKeysResponse> {
        answer(self.list(request.into_inner()).await)
    }

    async fn update_api_key(&self, request: Request<pb::UpdateApiKeyRequest>) -> Answer<pb::ApiKey> {
        let by = caller(&request);
        answer(self.update(&by, request.into_inner()).await)
    }

    async fn revoke_api_key(&self, request: Request<pb::RevokeApiKeyRequest>) -> Answer<pb::ApiKey> {
        let by = caller(&request);
        answer(self.revoke(&by, request.into_inner()).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(paths: &[&str]) -> prost_types::FieldMask {
        prost_types::FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn update_masks_name_known_fields() {
        assert_eq!(update_paths(Some(&mask(&["*"]))).unwrap(), UPDATABLE.to_vec());
        assert_eq!(
            update_paths(Some(&mask(&["scopes", "scopes"]))).unwrap(),
            vec!["scopes"]
        );
        for bad in [
            None,
            Some(mask(&[])),
            Some(mask(&["key_prefix"])),
            Some(mask(&["state"])),
        ] {
            match update_paths(bad.as_ref()) {
                Err(GatewayError::InvalidArgument { field, .. }) => assert_eq!(field, "update_mask"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}

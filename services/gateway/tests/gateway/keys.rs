//! Key management through `GatewayService`.

use esim_gateway::entity::api_key;
use esim_gateway::keys::{self, KeyHash};
use esim_proto::gateway::v1 as pb;
use prost_types::FieldMask;
use sea_orm::EntityTrait;
use tonic::Code;
use tonic_types::StatusExt;

use crate::common::{authed, harnesses, violated_field};

fn new_key(name: &str, scopes: &[pb::Scope]) -> pb::ApiKey {
    pb::ApiKey {
        display_name: name.into(),
        scopes: scopes.iter().map(|s| *s as i32).collect(),
        ..Default::default()
    }
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

#[tokio::test]
async fn a_key_is_shown_once_and_only_its_hash_is_stored() {
    for h in harnesses().await {
        let (key, created) = h
            .create_key("web shop", &[pb::Scope::Read, pb::Scope::Order], None)
            .await;
        assert!(keys::well_formed(&key) && key.starts_with("esk_"), "{}", h.label);
        assert_eq!(created.key_prefix, &key[..8]);
        assert_eq!(created.display_name, "web shop");
        assert_eq!(created.state, pb::ApiKeyState::Active as i32);
        assert!(
            created.create_time.is_some() && created.update_time.is_some() && created.revoke_time.is_none()
        );

        let rows = api_key::Entity::find().all(&h.db).await.unwrap();
        let row = rows
            .iter()
            .find(|r| created.name == format!("apiKeys/{}", r.id))
            .unwrap();
        assert_eq!(row.key_hash, KeyHash::of(&key).to_hex());
        assert!(
            rows.iter().all(|r| !format!("{r:?}").contains(&key[8..])),
            "{}: the key is stored somewhere",
            h.label
        );

        // The key works at once (the cache was refreshed by the change) and is never shown again.
        assert!(h.get_usage(Some(&key)).await.is_ok(), "{}", h.label);
        let got = h
            .gateway()
            .get_api_key(authed(
                pb::GetApiKeyRequest {
                    name: created.name.clone(),
                },
                &h.admin_key,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got, created);
    }
}

#[tokio::test]
async fn keys_are_listed_updated_and_revoked() {
    for h in harnesses().await {
        let mut client = h.gateway();
        let admin = h.admin_key.clone();
        let (_, a) = h.create_key("a", &[pb::Scope::Read], None).await;
        let (_, b) = h.create_key("b", &[pb::Scope::Order], None).await;
        let (c_key, c) = h.create_key("c", &[pb::Scope::Read], Some((5, 10))).await;

        // Newest first, in pages; the bootstrap key is the oldest.
        let mut names = Vec::new();
        let mut request = pb::ListApiKeysRequest {
            page_size: 2,
            ..Default::default()
        };
        loop {
            let page = client
                .list_api_keys(authed(request.clone(), &admin))
                .await
                .unwrap()
                .into_inner();
            assert!(page.api_keys.len() <= 2);
            names.extend(page.api_keys.into_iter().map(|k| k.display_name));
            if page.next_page_token.is_empty() {
                break;
            }
            request.page_token = page.next_page_token;
        }
        assert_eq!(names, ["c", "b", "a", "bootstrap"], "{}", h.label);

        // Update: one field, then everything.
        let updated = client
            .update_api_key(authed(
                pb::UpdateApiKeyRequest {
                    api_key: Some(pb::ApiKey {
                        name: a.name.clone(),
                        display_name: "a renamed".into(),
                        scopes: vec![pb::Scope::Admin as i32],
                        ..Default::default()
                    }),
                    update_mask: mask(&["display_name"]),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(updated.display_name, "a renamed");
        assert_eq!(
            updated.scopes,
            vec![pb::Scope::Read as i32],
            "not in the mask: unchanged"
        );
        let updated = client
            .update_api_key(authed(
                pb::UpdateApiKeyRequest {
                    api_key: Some(pb::ApiKey {
                        name: c.name.clone(),
                        display_name: "c2".into(),
                        scopes: vec![pb::Scope::Read as i32, pb::Scope::Admin as i32],
                        rate_limit: None,
                        ..Default::default()
                    }),
                    update_mask: mask(&["*"]),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(updated.display_name, "c2");
        assert_eq!(
            updated.scopes,
            vec![pb::Scope::Read as i32, pb::Scope::Admin as i32]
        );
        assert_eq!(updated.rate_limit, None, "cleared: back to the defaults");
        // The new scope works at once.
        client
            .get_api_key(authed(pb::GetApiKeyRequest { name: b.name.clone() }, &c_key))
            .await
            .unwrap();

        // Revoke, twice: the second returns it unchanged.
        let revoke = |name: &str| pb::RevokeApiKeyRequest {
            name: name.to_owned(),
            ..Default::default()
        };
        let revoked = client
            .revoke_api_key(authed(revoke(&b.name), &admin))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(revoked.state, pb::ApiKeyState::Revoked as i32);
        assert!(revoked.revoke_time.is_some());
        let again = client
            .revoke_api_key(authed(revoke(&b.name), &admin))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again, revoked, "{}", h.label);

        let status = client
            .update_api_key(authed(
                pb::UpdateApiKeyRequest {
                    api_key: Some(pb::ApiKey {
                        name: b.name.clone(),
                        display_name: "back".into(),
                        ..Default::default()
                    }),
                    update_mask: mask(&["display_name"]),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");

        // Revoked keys are listed only on request.
        let list = |show_revoked| pb::ListApiKeysRequest {
            show_revoked,
            ..Default::default()
        };
        let active = client
            .list_api_keys(authed(list(false), &admin))
            .await
            .unwrap()
            .into_inner();
        assert!(active.api_keys.iter().all(|k| k.name != b.name));
        let all = client
            .list_api_keys(authed(list(true), &admin))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(all.api_keys.len(), 4);
        assert!(all.api_keys.iter().any(|k| k.name == b.name));

        let missing = client
            .get_api_key(authed(
                pb::GetApiKeyRequest {
                    name: format!("apiKeys/{}", uuid::Uuid::now_v7().simple()),
                },
                &admin,
            ))
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
        let missing = client
            .revoke_api_key(authed(
                revoke(&format!("apiKeys/{}", uuid::Uuid::now_v7().simple())),
                &admin,
            ))
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
    }
}

#[tokio::test]
async fn retries_with_a_request_id_get_the_first_answer() {
    for h in harnesses().await {
        let mut client = h.gateway();
        let admin = h.admin_key.clone();
        let create = pb::CreateApiKeyRequest {
            request_id: "create-1".into(),
            api_key: Some(new_key("retried", &[pb::Scope::Read])),
        };
        let first = client
            .create_api_key(authed(create.clone(), &admin))
            .await
            .unwrap()
            .into_inner();
        let name = first.api_key.unwrap().name;
        let retry = client
            .create_api_key(authed(create.clone(), &admin))
            .await
            .unwrap_err();
        assert_eq!(retry.code(), Code::AlreadyExists, "{}: {retry:?}", h.label);
        assert!(retry.message().contains(&name), "{retry:?}");
        assert_eq!(
            retry
                .get_error_details()
                .resource_info()
                .map(|r| r.resource_name.clone()),
            Some(name.clone())
        );
        let count = api_key::Entity::find().all(&h.db).await.unwrap().len();
        assert_eq!(count, 2, "{}: bootstrap and one created key", h.label);

        // The same id with another request.
        let other = client
            .create_api_key(authed(
                pb::CreateApiKeyRequest {
                    request_id: "create-1".into(),
                    api_key: Some(new_key("other", &[pb::Scope::Read])),
                },
                &admin,
            ))
            .await
            .unwrap_err();
        assert_eq!(other.code(), Code::AlreadyExists);

        // Update: a retry returns the original result even after a later change.
        let rename = |request_id: &str, display_name: &str| pb::UpdateApiKeyRequest {
            request_id: request_id.into(),
            api_key: Some(pb::ApiKey {
                name: name.clone(),
                display_name: display_name.into(),
                ..Default::default()
            }),
            update_mask: mask(&["display_name"]),
        };
        let first = client
            .update_api_key(authed(rename("update-1", "first"), &admin))
            .await
            .unwrap()
            .into_inner();
        client
            .update_api_key(authed(rename("update-2", "second"), &admin))
            .await
            .unwrap();
        let retried = client
            .update_api_key(authed(rename("update-1", "first"), &admin))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(retried, first, "{}", h.label);
        let current = client
            .get_api_key(authed(pb::GetApiKeyRequest { name: name.clone() }, &admin))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(current.display_name, "second", "the retry changed nothing");

        // Revoke: the same answer again.
        let revoke = pb::RevokeApiKeyRequest {
            request_id: "revoke-1".into(),
            name: name.clone(),
        };
        let first = client
            .revoke_api_key(authed(revoke.clone(), &admin))
            .await
            .unwrap()
            .into_inner();
        let retried = client
            .revoke_api_key(authed(revoke, &admin))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(retried, first);
    }
}

#[tokio::test]
async fn bad_input_names_the_field_and_changes_nothing() {
    for h in harnesses().await {
        let mut client = h.gateway();
        let admin = h.admin_key.clone();
        let (_, existing) = h.create_key("existing", &[pb::Scope::Read], None).await;
        let before = api_key::Entity::find().all(&h.db).await.unwrap();

        let create = |request_id: &str, key: Option<pb::ApiKey>| pb::CreateApiKeyRequest {
            request_id: request_id.into(),
            api_key: key,
        };
        let with_limit = |rps, burst| pb::ApiKey {
            rate_limit: Some(pb::RateLimit {
                requests_per_second: rps,
                burst,
            }),
            ..new_key("limited", &[pb::Scope::Read])
        };
        let cases = [
            (create("", None), "api_key"),
            (
                create("", Some(new_key("", &[pb::Scope::Read]))),
                "api_key.display_name",
            ),
            (
                create("", Some(new_key(&"x".repeat(101), &[pb::Scope::Read]))),
                "api_key.display_name",
            ),
            (create("", Some(new_key("no scopes", &[]))), "api_key.scopes"),
            (
                create("", Some(new_key("twice", &[pb::Scope::Read, pb::Scope::Read]))),
                "api_key.scopes[1]",
            ),
            (
                create("", Some(new_key("unspecified", &[pb::Scope::Unspecified]))),
                "api_key.scopes[0]",
            ),
            (
                create("", Some(with_limit(0, 10))),
                "api_key.rate_limit.requests_per_second",
            ),
            (create("", Some(with_limit(10, 5))), "api_key.rate_limit.burst"),
            (
                create("", Some(with_limit(10, 100_001))),
                "api_key.rate_limit.burst",
            ),
            (
                create("has space", Some(new_key("id", &[pb::Scope::Read]))),
                "request_id",
            ),
        ];
        for (request, field) in cases {
            let status = client.create_api_key(authed(request, &admin)).await.unwrap_err();
            assert_eq!(violated_field(&status), field, "{}", h.label);
        }

        let update =
            |name: &str, mask_paths: Option<&[&str]>, scopes: &[pb::Scope]| pb::UpdateApiKeyRequest {
                request_id: String::new(),
                api_key: Some(pb::ApiKey {
                    name: name.into(),
                    ..new_key("renamed", scopes)
                }),
                update_mask: mask_paths.and_then(mask),
            };
        let cases = [
            (update(&existing.name, None, &[pb::Scope::Read]), "update_mask"),
            (
                update(&existing.name, Some(&["key_prefix"]), &[pb::Scope::Read]),
                "update_mask",
            ),
            (update(&existing.name, Some(&["scopes"]), &[]), "api_key.scopes"),
            (
                update("keys/1", Some(&["display_name"]), &[pb::Scope::Read]),
                "api_key.name",
            ),
            (
                update("apiKeys/NOT-AN-ID", Some(&["display_name"]), &[pb::Scope::Read]),
                "api_key.name",
            ),
        ];
        for (request, field) in cases {
            let status = client.update_api_key(authed(request, &admin)).await.unwrap_err();
            assert_eq!(violated_field(&status), field, "{}", h.label);
        }
        let status = client
            .update_api_key(authed(
                pb::UpdateApiKeyRequest {
                    api_key: None,
                    update_mask: mask(&["*"]),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap_err();
        assert_eq!(violated_field(&status), "api_key");

        let status = client
            .get_api_key(authed(pb::GetApiKeyRequest { name: String::new() }, &admin))
            .await
            .unwrap_err();
        assert_eq!(violated_field(&status), "name");
        let status = client
            .revoke_api_key(authed(
                pb::RevokeApiKeyRequest {
                    name: "apiKeys/x".into(),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap_err();
        assert_eq!(violated_field(&status), "name");
        for (request, field) in [
            (
                pb::ListApiKeysRequest {
                    page_size: 501,
                    ..Default::default()
                },
                "page_size",
            ),
            (
                pb::ListApiKeysRequest {
                    page_token: "garbage".into(),
                    ..Default::default()
                },
                "page_token",
            ),
        ] {
            let status = client.list_api_keys(authed(request, &admin)).await.unwrap_err();
            assert_eq!(violated_field(&status), field);
        }
        // A token of one filter does not work with another.
        let page = client
            .list_api_keys(authed(
                pb::ListApiKeysRequest {
                    page_size: 1,
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        let status = client
            .list_api_keys(authed(
                pb::ListApiKeysRequest {
                    page_size: 1,
                    page_token: page.next_page_token,
                    show_revoked: true,
                },
                &admin,
            ))
            .await
            .unwrap_err();
        assert_eq!(violated_field(&status), "page_token");

        assert_eq!(
            api_key::Entity::find().all(&h.db).await.unwrap(),
            before,
            "{}",
            h.label
        );
    }
}

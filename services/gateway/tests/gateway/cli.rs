//! `esim-keys` through its library functions, and the bootstrap key.

use clap::Parser;
use esim_gateway::cli::{Cli, execute};
use esim_gateway::keys::{self, KeyHash};
use esim_gateway::store::{self, Bootstrap};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::common::harnesses;

async fn run(h: &crate::common::Harness, args: &[&str]) -> Result<(String, String), String> {
    let cli = Cli::try_parse_from(std::iter::once("esim-keys").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    let (mut out, mut notes) = (Vec::new(), Vec::new());
    execute(cli, &h.db, &mut out, &mut notes)
        .await
        .map_err(|e| e.to_string())?;
    Ok((String::from_utf8(out).unwrap(), String::from_utf8(notes).unwrap()))
}

#[tokio::test]
async fn keys_are_created_listed_and_revoked_from_the_command_line() {
    for h in harnesses().await {
        let (out, notes) = run(
            &h,
            &[
                "create", "--name", "web shop", "--scope", "read", "--scope", "order", "--rps", "5",
                "--burst", "10",
            ],
        )
        .await
        .unwrap();
        // The key alone on stdout; what was made on stderr, without the key.
        let key = out.strip_suffix('\n').unwrap();
        assert!(
            keys::well_formed(key) && !key.contains('\n'),
            "{}: {out:?}",
            h.label
        );
        assert!(
            notes.contains("web shop") && notes.contains(&key[..8]) && !notes.contains(key),
            "{notes}"
        );
        let name = notes.split_whitespace().nth(1).unwrap().to_owned();
        assert!(name.starts_with("apiKeys/"), "{notes}");

        // A running gateway picks it up with its next refresh.
        h.keys.refresh(&h.db).await.unwrap();
        h.get_usage(Some(key)).await.unwrap();

        let (list, _) = run(&h, &["list"]).await.unwrap();
        let line = list.lines().find(|l| l.starts_with(&name)).unwrap();
        assert!(
            line.contains("ACTIVE") && line.contains("read,order") && line.contains("5/10"),
            "{line}"
        );
        assert!(line.ends_with("web shop") && !list.contains(key));

        let (out, _) = run(&h, &["revoke", &name]).await.unwrap();
        assert_eq!(out, format!("{name}\tREVOKED\n"));
        let (list, _) = run(&h, &["list"]).await.unwrap();
        assert!(!list.contains(&name), "{list}");
        let (list, _) = run(&h, &["list", "--revoked"]).await.unwrap();
        assert!(
            list.lines()
                .any(|l| l.starts_with(&name) && l.contains("REVOKED")),
            "{list}"
        );

        // Bad input, in the command's terms.
        let err = run(&h, &["create", "--name", "", "--scope", "read"])
            .await
            .unwrap_err();
        assert!(err.starts_with("--name:"), "{err}");
        let err = run(
            &h,
            &["create", "--name", "x", "--scope", "read", "--scope", "read"],
        )
        .await
        .unwrap_err();
        assert!(err.starts_with("--scope:"), "{err}");
        let err = run(
            &h,
            &[
                "create", "--name", "x", "--scope", "read", "--rps", "10", "--burst", "1",
            ],
        )
        .await
        .unwrap_err();
        assert!(err.starts_with("--burst:"), "{err}");
        let err = run(&h, &["revoke", "nonsense"]).await.unwrap_err();
        assert!(err.contains("not a key name"), "{err}");
    }
}

#[tokio::test]
async fn the_bootstrap_key_is_created_once_and_stays_revoked() {
    for h in harnesses().await {
        let rows = esim_gateway::entity::api_key::Entity::find()
            .filter(esim_gateway::entity::api_key::Column::KeyHash.eq(KeyHash::of(&h.admin_key).to_hex()))
            .all(&h.db)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{}", h.label);
        assert_eq!(
            (rows[0].display_name.as_str(), rows[0].scopes.as_str()),
            ("bootstrap", "read,order,admin")
        );
        let name = store::resource_name(&rows[0].id);
        assert_eq!(
            store::ensure_bootstrap(&h.db, &h.admin_key).await.unwrap(),
            Bootstrap::Present {
                name: name.clone(),
                active: true
            }
        );
        store::revoke(&h.db, &rows[0].id, None).await.unwrap();
        assert_eq!(
            store::ensure_bootstrap(&h.db, &h.admin_key).await.unwrap(),
            Bootstrap::Present { name, active: false }
        );
    }
}

//! `esim-sims` through its library function: a SIM quarantined by a real activation timeout is
//! listed, refused release while it is anything else, and claimed again once released.

use clap::Parser;
use esim_proto::provisioning::v1 as pb;
use esim_provisioning::cli::{Cli, execute};

use crate::common::{Harness, databases, state, with_an_activation_timed_out};

async fn run(h: &Harness, args: &[&str]) -> Result<String, String> {
    let cli = Cli::try_parse_from(std::iter::once("esim-sims").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    execute(cli, &h.db, &mut out).await.map_err(|e| e.to_string())?;
    Ok(String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn a_quarantined_sim_is_listed_and_released_for_the_next_order() {
    for database in databases().await {
        let h = with_an_activation_timed_out(database).await;
        let ok = h.provision("r2", "orders/next").await.unwrap();
        let quarantined = h
            .claims()
            .await
            .into_iter()
            .find(|(_, status)| status == "quarantined")
            .map(|(endpoint, _)| endpoint)
            .expect("one SIM quarantined");

        let listed = run(&h, &["list"]).await.unwrap();
        let rows: Vec<&str> = listed.lines().skip(1).collect();
        assert_eq!(rows.len(), 1, "{}: only the quarantined SIM: {listed}", h.label);
        assert!(rows[0].starts_with(&format!("{quarantined}\t")), "{listed}");
        assert!(
            rows[0].contains("\tquarantined\t") && rows[0].contains("unknown"),
            "{listed}"
        );
        let everything = run(&h, &["list", "--all"]).await.unwrap();
        assert_eq!(everything.lines().count(), 3, "{everything}");

        let err = run(&h, &["release", &ok.sft_endpoint_id]).await.unwrap_err();
        assert!(err.contains("is assigned, not quarantined"), "{err}");
        let err = run(&h, &["release", "EP-NOPE"]).await.unwrap_err();
        assert!(err.contains("no claimed SIM"), "{err}");
        assert_eq!(h.claims().await.len(), 2, "refused releases change nothing");

        let released = run(&h, &["release", &quarantined]).await.unwrap();
        assert!(released.contains("RELEASED"), "{released}");
        assert!(
            run(&h, &["release", &quarantined]).await.is_err(),
            "released once"
        );
        // The pool's only free SIM again: the next order gets it.
        let next = h.provision("r3", "orders/after-release").await.unwrap();
        assert_eq!(next.sft_endpoint_id, quarantined, "{}", h.label);
        assert_eq!(state(&next), pb::EsimState::Activated, "{next:?}");
        h.stop().await;
    }
}

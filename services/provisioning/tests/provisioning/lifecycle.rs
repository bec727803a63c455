//! Lifecycle transitions (MP and SFT), illegal ones refused without an upstream call,
//! recording MP eSIMs, add-ons, and input validation.

use std::time::Duration;

use esim_proto::provisioning::v1 as pb;
use esim_proto::r#type::v1::Provider;
use esim_upstream::config::MpConfig;
use esim_upstream::mp::{CreateOrder, MpClient};
use sea_orm::{ConnectionTrait, Statement};
use tonic::Code;
use tonic_types::StatusExt;

use crate::common::{Harness, databases, state};

fn suspend(name: &str, request_id: &str) -> pb::SuspendEsimRequest {
    pb::SuspendEsimRequest {
        request_id: request_id.into(),
        name: name.into(),
        reason: "traveller asked".into(),
    }
}

fn resume(name: &str) -> pb::ResumeEsimRequest {
    pb::ResumeEsimRequest {
        request_id: String::new(),
        name: name.into(),
    }
}

fn terminate(name: &str) -> pb::TerminateEsimRequest {
    pb::TerminateEsimRequest {
        request_id: String::new(),
        name: name.into(),
        reason: "trip over".into(),
    }
}

async fn count_rows(h: &Harness, table: &str) -> usize {
    let backend = h.db.get_database_backend();
    h.db.query_all_raw(Statement::from_string(backend, format!("SELECT 1 FROM {table}")))
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn sft_lifecycle_and_illegal_transitions() {
    for database in databases().await {
        let h = Harness::start(database, 2).await;
        let mut client = h.client.clone();
        let esim = h.provision("r1", "orders/sft-life").await.unwrap();
        const LC: &str = "sft.EndPointLifeCycleChange";
        assert_eq!(h.sandbox.call_count(LC), 1);

        // Resume of an active eSIM: illegal, no upstream call.
        let status = client.resume_esim(resume(&esim.name)).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{}: {status:?}", h.label);
        assert_eq!(h.sandbox.call_count(LC), 1);

        let suspended = client
            .suspend_esim(suspend(&esim.name, "s-1"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(state(&suspended), pb::EsimState::Suspended);
        assert_eq!(suspended.state_reason, "traveller asked");
        assert_eq!(h.sandbox.call_count(LC), 2);
        assert_eq!(h.sandbox.state_summary()["sft"]["simsByStatus"]["Suspended"], 1);
        // The same request id answers the same, without a second call.
        let again = client
            .suspend_esim(suspend(&esim.name, "s-1"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again, suspended);
        assert_eq!(h.sandbox.call_count(LC), 2);
        // A new suspend of a suspended eSIM is illegal.
        let status = client.suspend_esim(suspend(&esim.name, "s-2")).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);

        let resumed = client.resume_esim(resume(&esim.name)).await.unwrap().into_inner();
        assert_eq!(state(&resumed), pb::EsimState::Activated);
        assert_eq!(h.sandbox.call_count(LC), 3);

        let terminated = client
            .terminate_esim(terminate(&esim.name))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(state(&terminated), pb::EsimState::Terminated);
        assert!(terminated.terminate_time.is_some());
        assert!(!terminated.installation_ready);
        assert_eq!(h.sandbox.call_count(LC), 4);
        let addons = client
            .list_addons(pb::ListAddonsRequest {
                parent: esim.name.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .addons;
        assert_eq!(addons[0].state, pb::AddonState::Cancelled as i32);

        // Nothing brings a terminated eSIM back, and no call leaves the service.
        let calls = h.sandbox.call_counts();
        let status = client.resume_esim(resume(&esim.name)).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(status.message().contains("terminated"), "{status:?}");
        for status in [
            client.terminate_esim(terminate(&esim.name)).await.unwrap_err(),
            client.suspend_esim(suspend(&esim.name, "")).await.unwrap_err(),
            client
                .deliver_esim(pb::DeliverEsimRequest {
                    name: esim.name.clone(),
                    ..Default::default()
                })
                .await
                .unwrap_err(),
        ] {
            assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        }
        assert_eq!(h.sandbox.call_counts(), calls, "{}", h.label);

        // Unknown eSIMs and bad names.
        let status = client
            .suspend_esim(suspend("esims/00000000000000000000000000", ""))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        let status = client.suspend_esim(suspend("orders/x", "")).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        h.stop().await;
    }
}

#[tokio::test]
async fn mp_esims_are_recorded_and_switched_upstream() {
    for database in databases().await {
        let h = Harness::start(database, 0).await;
        let mut client = h.client.clone();
        let mp = MpClient::new(MpConfig {
            base_url: format!("http://{}", h.sandbox_addr),
            ..MpConfig::default()
        })
        .unwrap();
        let product = mp
            .product_list("setup")
            .await
            .unwrap()
            .into_iter()
            .find(|p| !p.allowed_cycle_counts.is_empty())
            .unwrap();
        let order = mp
            .activation_code(
                &CreateOrder {
                    product_id: product.product_id,
                    goods_id: Some(product.goods_id),
                    cycles: Some(product.allowed_cycle_counts[0]),
                    iccid: None,
                    price: None,
                    activate: Some(false),
                },
                "setup",
            )
            .await
            .unwrap();
        let request = |request_id: &str, order_name: &str, code: &str| pb::CreateEsimRequest {
            request_id: request_id.into(),
            esim: Some(pb::Esim {
                order: order_name.into(),
                provider: Provider::Mp as i32,
                iccid: order.iccid.to_string(),
                upstream_order_code: order.order_code.clone(),
                ..Default::default()
            }),
            activation_code: code.into(),
            esim_id: String::new(),
        };
        let code = order.activation_code.expose().to_owned();

        // Bad input: INVALID_ARGUMENT naming the field, nothing written.
        let mut bad_iccid = request("c-bad", "orders/mp-1", &code);
        bad_iccid.esim.as_mut().unwrap().iccid = "8943108169999589680".into();
        let mut bad_provider = request("c-bad", "orders/mp-1", &code);
        bad_provider.esim.as_mut().unwrap().provider = Provider::Sft as i32;
        let mut bad_id = request("c-bad", "orders/mp-1", &code);
        bad_id.esim_id = "01arz3ndektsv4rrffq69g5fa".into();
        for (req, field) in [
            (
                request("c-bad", "orders/mp-1", "LPA:2$smdp.example.com$X"),
                "activation_code",
            ),
            (request("c-bad", "orders/mp-1", ""), "activation_code"),
            (request("c-bad", "mp-1", &code), "esim.order"),
            (request("bad id!", "orders/mp-1", &code), "request_id"),
            (bad_iccid, "esim.iccid"),
            (bad_provider, "esim.provider"),
            (bad_id, "esim_id"),
        ] {
            let status = client.create_esim(req).await.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
            let details = status.get_error_details();
            assert_eq!(details.bad_request().unwrap().field_violations[0].field, field);
            assert!(!status.message().contains("X"), "no code echoed: {status:?}");
        }
        assert_eq!(count_rows(&h, "provisioning_esims").await, 0);

        let created = client
            .create_esim(request("c-1", "orders/mp-1", &code))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(state(&created), pb::EsimState::Selected, "{}", h.label);
        assert!(created.installation_ready);
        assert_eq!(created.upstream_order_code, order.order_code);
        let replay = client
            .create_esim(request("c-1", "orders/mp-1", &code))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(replay, created);
        let status = client
            .create_esim(request("c-1", "orders/mp-2", &code))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists);
        let status = client
            .create_esim(request("c-2", "orders/mp-1", &code))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists);

        // An id chosen by the caller (any case) names the eSIM; a replay returns it, and another
        // eSIM cannot take the id.
        let mut named = request("c-named", "orders/mp-named", &code);
        named.esim_id = "01ARZ3NDEKTSV4RRFFQ69G5FAV".into();
        let chosen = client.create_esim(named.clone()).await.unwrap().into_inner();
        assert_eq!(chosen.name, "esims/01arz3ndektsv4rrffq69g5fav", "{}", h.label);
        assert_eq!(client.create_esim(named).await.unwrap().into_inner(), chosen);
        let mut taken = request("c-taken", "orders/mp-other", &code);
        taken.esim_id = "01arz3ndektsv4rrffq69g5fav".into();
        let status = client.create_esim(taken).await.unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
        assert!(
            status.message().contains("esims/01arz3ndektsv4rrffq69g5fav"),
            "{status:?}"
        );

        let status_of = |h: &Harness| h.sandbox.mp_order_status(&order.order_code);
        assert_eq!(status_of(&h).as_deref(), Some("0"));
        let activated = client
            .activate_esim(pb::ActivateEsimRequest {
                request_id: String::new(),
                name: created.name.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(state(&activated), pb::EsimState::Activated);
        assert!(activated.activate_time.is_some());
        assert_eq!(status_of(&h).as_deref(), Some("1"));
        let status = client
            .activate_esim(pb::ActivateEsimRequest {
                request_id: String::new(),
                name: created.name.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);

        client.suspend_esim(suspend(&created.name, "")).await.unwrap();
        assert_eq!(status_of(&h).as_deref(), Some("2"));
        client.resume_esim(resume(&created.name)).await.unwrap();
        assert_eq!(status_of(&h).as_deref(), Some("1"));
        client.terminate_esim(terminate(&created.name)).await.unwrap();
        assert_eq!(status_of(&h).as_deref(), Some("3"));
        let switches = h.sandbox.call_count("mp.switchOrder");
        assert_eq!(switches, 4);
        let status = client.resume_esim(resume(&created.name)).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(h.sandbox.call_count("mp.switchOrder"), switches);

        // MP refuses an upstream change it cannot make: FAILED_PRECONDITION, state unchanged.
        let other = mp
            .activation_code(
                &CreateOrder {
                    product_id: product.product_id,
                    goods_id: Some(product.goods_id),
                    cycles: Some(product.allowed_cycle_counts[0]),
                    iccid: None,
                    price: None,
                    activate: Some(false),
                },
                "setup",
            )
            .await
            .unwrap();
        let mut req = request("c-3", "orders/mp-3", other.activation_code.expose());
        let e = req.esim.as_mut().unwrap();
        e.iccid = other.iccid.to_string();
        e.upstream_order_code = other.order_code.clone();
        let second = client.create_esim(req).await.unwrap().into_inner();
        h.sandbox
            .set_fault("mp.switchOrder", esim_sandbox::Fault::error_500());
        let status = client
            .activate_esim(pb::ActivateEsimRequest {
                request_id: String::new(),
                name: second.name.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        let still = client
            .get_esim(pb::GetEsimRequest {
                name: second.name.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(state(&still), pb::EsimState::Selected);
        h.stop().await;
    }
}

#[tokio::test]
async fn addons_are_limited_to_fifteen_active_and_listed_newest_first() {
    for database in databases().await {
        let h = Harness::start(database, 1).await;
        let mut client = h.client.clone();
        let esim = h.provision("r1", "orders/addons").await.unwrap();
        let create = |i: usize| pb::CreateAddonRequest {
            request_id: format!("topup-{i}"),
            parent: esim.name.clone(),
            addon: Some(pb::Addon {
                sft_plan_id: "1001".into(),
                order: format!("orders/topup-{i}"),
                ..Default::default()
            }),
        };
        let first = client.create_addon(create(1)).await.unwrap().into_inner();
        assert_eq!(first.state, pb::AddonState::Active as i32, "{}", h.label);
        assert!(first.validity_end_time.is_some());
        let replay = client.create_addon(create(1)).await.unwrap().into_inner();
        assert_eq!(replay, first);
        for i in 2..=14 {
            client.create_addon(create(i)).await.unwrap();
        }
        let subscribes = h.sandbox.call_count("sft.SubscribeAddon");
        assert_eq!(subscribes, 15);
        let status = client.create_addon(create(15)).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert_eq!(
            h.sandbox.call_count("sft.SubscribeAddon"),
            subscribes,
            "refused locally"
        );

        let got = client
            .get_addon(pb::GetAddonRequest {
                name: first.name.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got, first);
        let mut names = Vec::new();
        let mut token = String::new();
        loop {
            let page = client
                .list_addons(pb::ListAddonsRequest {
                    parent: esim.name.clone(),
                    page_size: 10,
                    page_token: token.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            names.extend(page.addons.into_iter().map(|a| a.name));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(names.len(), 15);
        let mut sorted = names.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(names, sorted, "newest first");
        assert_eq!(names.last(), Some(&names.iter().min().unwrap().clone()));
        h.stop().await;
    }
}

#[tokio::test]
async fn bad_provision_input_writes_nothing_and_calls_no_upstream() {
    for database in databases().await {
        let h = Harness::start(database, 1).await;
        let mut client = h.client.clone();
        for (req, field) in [
            (
                pb::ProvisionEsimRequest {
                    request_id: "r".into(),
                    order: "nope".into(),
                    sft_plan_id: "1001".into(),
                },
                "order",
            ),
            (
                pb::ProvisionEsimRequest {
                    request_id: String::new(),
                    order: "orders/a".into(),
                    sft_plan_id: "1001".into(),
                },
                "request_id",
            ),
            (
                pb::ProvisionEsimRequest {
                    request_id: "r".into(),
                    order: "orders/a".into(),
                    sft_plan_id: " ".into(),
                },
                "sft_plan_id",
            ),
        ] {
            let status = client.provision_esim(req).await.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
            assert!(status.message().starts_with(field), "{status:?}");
        }
        let status = client
            .list_esims(pb::ListEsimsRequest {
                states: vec![0],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let status = client
            .list_esims(pb::ListEsimsRequest {
                page_token: "bogus".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            h.sandbox.call_counts().values().all(|&n| n == 0),
            "{:?}",
            h.sandbox.call_counts()
        );
        assert_eq!(count_rows(&h, "provisioning_esims").await, 0);
        h.stop().await;
    }
}

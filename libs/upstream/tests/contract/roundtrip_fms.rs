//! FMS client ↔ sandbox: the purchase flow call by call, accounts, token expiry and the
//! pre-order window.

use std::time::Duration;

use esim_domain::{Mcc, Money};
use esim_upstream::error::{ErrorKind, FmsCode};
use esim_upstream::fms::wire::PaymentResult;
use esim_upstream::fms::{FmsClient, FmsCredentials, PayStatus, PaymentNotice, PreOrder, PreOrderInput};

use crate::sandbox_roundtrip::{MB, Sb, start};

fn china() -> Mcc {
    "460".parse().unwrap()
}

/// Registers `email` and pre-orders the first package listed for China.
async fn pre_order(fms: &FmsClient, email: &str) -> (FmsCredentials, PreOrder) {
    let creds = FmsCredentials::from_plain(email, "s3cret");
    fms.email_register(&creds, "rt-register").await.unwrap();
    let pk = fms
        .package_list(&creds, china(), None, "rt")
        .await
        .unwrap()
        .remove(0);
    let d = fms.detail(&creds, pk.id, 1, "rt").await.unwrap().unwrap();
    let (money, currency_id) = d.prices[0];
    let po = fms
        .pre_order(
            &creds,
            &PreOrderInput {
                package_id: d.id,
                package_code: d.package_code.clone(),
                money,
                currency_id,
                period_num: d.period,
                package_num: 1,
                discount_flag: 0,
                receive_qr_email: Some(email.to_owned()),
            },
            "rt-preorder",
        )
        .await
        .unwrap();
    (creds, po)
}

fn notice(sb: &Sb, po: &PreOrder, result: PaymentResult) -> PaymentNotice {
    PaymentNotice {
        pre_order_id: po.id,
        date_time: sb.sandbox.now().timestamp(),
        paid: po.amount,
        payment_id: format!("pi_rt_{}", po.id),
        result,
    }
}

#[tokio::test]
async fn fms_purchase_flow_round_trip() {
    let sb = start().await;
    let fms = sb.fms();
    let creds = FmsCredentials::from_plain("alice@example.com", "s3cret");
    fms.email_register(&creds, "rt-register").await.unwrap();
    assert_eq!(sb.calls("fms.emailRegister"), 1);

    // 2. countries by MCC.
    let countries = fms.country_package_list(&creds, None, "rt").await.unwrap();
    assert_eq!(countries.len(), esim_sandbox::catalog::COUNTRIES.len());
    let cn = countries.iter().find(|c| c.mcc == china()).expect("China listed");
    assert_eq!(cn.name.as_deref(), Some("China"));
    // type 2 = plans covering only this country: still every country (each has its own).
    let only = fms.country_package_list(&creds, Some(2), "rt").await.unwrap();
    assert_eq!(only.len(), countries.len());

    // 3. packages of a country: its four own plus the Asian regional one.
    let packages = fms.package_list(&creds, china(), None, "rt").await.unwrap();
    assert_eq!(packages.len(), 5, "{packages:?}");
    let own_only = fms.package_list(&creds, china(), Some(2), "rt").await.unwrap();
    assert_eq!(own_only.len(), 4, "type 2 drops the regional plan");
    let pk = packages
        .iter()
        .find(|p| p.name.as_deref().unwrap().contains("1GB 7 Days"))
        .unwrap();
    assert_eq!(pk.volume_bytes, Some(1024 * MB), "flow in MB → bytes");
    assert_eq!(pk.days, Some(7));
    let price = pk.price.expect("priced");
    assert_eq!(price.currency().as_str(), "USD");
    assert!(pk.package_code.starts_with("LP2022"), "{pk:?}");

    // 4. detail.
    let d = fms.detail(&creds, pk.id, 1, "rt").await.unwrap().expect("detail");
    assert_eq!((d.id, d.package_code.as_str()), (pk.id, pk.package_code.as_str()));
    assert_eq!(d.period, 1);
    assert_eq!(d.volume_bytes, Some(1024 * MB));
    assert_eq!(d.prices, vec![(price, 2)], "currencyInfo: USD, currencyId 2");

    // 5. pre-order.
    let before = sb.sandbox.now();
    let po = fms
        .pre_order(
            &creds,
            &PreOrderInput {
                package_id: d.id,
                package_code: d.package_code.clone(),
                money: price,
                currency_id: 2,
                period_num: d.period,
                package_num: 1,
                discount_flag: 0,
                receive_qr_email: Some("alice@example.com".into()),
            },
            "rt-preorder",
        )
        .await
        .unwrap();
    assert!(po.id > 0);
    assert!(po.order_no.starts_with("ESIM_L"), "{po:?}");
    assert_eq!(po.amount, price);
    assert_eq!(po.period_num, Some(1));
    assert_eq!(po.package_name.as_deref(), pk.name.as_deref());
    let lag = (po.order_time.with_timezone(&chrono::Utc) - before).num_seconds();
    assert!((0..=5).contains(&lag), "orderTime is the sandbox's now: {po:?}");

    // 8. waiting until notified.
    let st = fms.query_ord_status_and_email(&creds, po.id, "rt").await.unwrap();
    assert_eq!(st.status, PayStatus::Waiting);
    assert_eq!(st.activation_code, None);

    // 7. notify the payment (once).
    fms.notify_payment(&creds, &notice(&sb, &po, PaymentResult::Succeeded), "rt-pay")
        .await
        .unwrap();
    assert_eq!(sb.calls("fms.paymentWebhook"), 1);
    let st = fms.query_ord_status_and_email(&creds, po.id, "rt").await.unwrap();
    assert_eq!(
        st.status,
        PayStatus::Waiting,
        "FMS assigns the profile asynchronously"
    );
    sb.sandbox.advance_clock(Duration::from_secs(3));
    let st = fms.query_ord_status_and_email(&creds, po.id, "rt").await.unwrap();
    assert_eq!(st.status, PayStatus::Paid);
    let qr = st.activation_code.expect("a QR once paid");
    assert_eq!(qr.smdp_address(), "rsp-fms.sandbox.esim.test");

    // A second notification of the same order is refused (notify once).
    let e = fms
        .notify_payment(&creds, &notice(&sb, &po, PaymentResult::Succeeded), "rt-pay-2")
        .await
        .unwrap_err();
    assert_eq!(e.fms_code(), Some(FmsCode::Error), "{e}");

    // 9. the eSIM.
    let esim = fms
        .my_esim_detail(&creds, po.id, "rt")
        .await
        .unwrap()
        .expect("eSIM");
    assert_eq!(esim.order_no.as_deref(), Some(po.order_no.as_str()));
    assert_eq!(esim.activation_code.as_ref(), Some(&qr));
    assert!(
        esim.iccid.as_ref().unwrap().as_str().starts_with("8985202"),
        "{esim:?}"
    );
    assert_eq!(esim.package_code.as_deref(), Some(pk.package_code.as_str()));
    assert_eq!(esim.total_bytes, Some(1024 * MB));
    assert_eq!(esim.used_bytes, Some(0));
    let (start, end) = (esim.start.unwrap(), esim.end.unwrap());
    assert_eq!((end - start).num_days(), 7);

    // Registering cached the token: no login was needed for any of this.
    assert_eq!(sb.calls("fms.login"), 0);
}

#[tokio::test]
async fn fms_login_and_password_reset_round_trip() {
    let sb = start().await;
    let fms = sb.fms();
    let old = FmsCredentials::from_plain("bob@example.com", "old-password");
    fms.email_register(&old, "rt").await.unwrap();
    fms.login(&old, "rt-login").await.unwrap();
    assert_eq!(sb.calls("fms.login"), 1);

    // A wrong password is a typed upstream error.
    let wrong = FmsCredentials::from_plain("bob@example.com", "guess");
    let e = sb.fms().login(&wrong, "rt").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Upstream { code: 10002, .. }), "{e}");

    let new = FmsCredentials::from_plain("bob@example.com", "new-password");
    fms.password_reset(&old, &new.passwd_md5, "rt-reset")
        .await
        .unwrap();
    assert_eq!(sb.calls("fms.passwordReset"), 1);
    assert_eq!(sb.calls("fms.login"), 3, "then a login with the new password");

    // The old password no longer logs in; the new one does, from a fresh client too.
    let fresh = sb.fms();
    let e = fresh.login(&old, "rt").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Upstream { code: 10002, .. }), "{e}");
    fresh.login(&new, "rt").await.unwrap();
    assert!(
        !fresh
            .country_package_list(&new, None, "rt")
            .await
            .unwrap()
            .is_empty()
    );
    // And the first client's cached token (from the new login) works.
    assert!(
        !fms.country_package_list(&new, None, "rt")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn fms_expired_token_logs_in_again_exactly_once() {
    let sb = start().await;
    let fms = sb.fms();
    let creds = FmsCredentials::from_plain("carol@example.com", "pw");
    fms.email_register(&creds, "rt").await.unwrap();
    assert!(
        !fms.country_package_list(&creds, None, "rt")
            .await
            .unwrap()
            .is_empty()
    );
    let logins = sb.calls("fms.login");

    // Past the token's 3 days (sandbox clock): the next call answers code 7.
    sb.sandbox
        .advance_clock(Duration::from_secs(sb.sandbox.config().fms_token_ttl_secs + 60));
    let countries = fms.country_package_list(&creds, None, "rt").await.unwrap();
    assert!(!countries.is_empty());
    assert_eq!(sb.calls("fms.login"), logins + 1, "exactly one re-login");
    assert_eq!(sb.calls("fms.countryPackageList"), 3, "ok, refused (7), retried");

    // The new token is cached: no further login.
    fms.package_list(&creds, china(), None, "rt").await.unwrap();
    assert_eq!(sb.calls("fms.login"), logins + 1);
}

#[tokio::test]
async fn fms_concurrent_calls_with_an_expired_token_share_one_login() {
    let sb = start().await;
    let fms = sb.fms();
    let creds = FmsCredentials::from_plain("dave@example.com", "pw");
    fms.email_register(&creds, "rt").await.unwrap();
    sb.sandbox
        .advance_clock(Duration::from_secs(sb.sandbox.config().fms_token_ttl_secs + 60));
    let (a, b, c) = tokio::join!(
        fms.country_package_list(&creds, None, "rt-a"),
        fms.package_list(&creds, china(), None, "rt-b"),
        fms.country_package_list(&creds, Some(1), "rt-c"),
    );
    assert!(a.is_ok() && b.is_ok() && c.is_ok(), "{a:?} {b:?} {c:?}");
    assert_eq!(sb.calls("fms.login"), 1, "one login shared by the three calls");
}

#[tokio::test]
async fn fms_payment_after_the_window_is_pre_order_timeout() {
    let sb = start().await;
    let fms = sb.fms();
    let (creds, po) = pre_order(&fms, "erin@example.com").await;
    sb.sandbox.advance_clock(Duration::from_secs(11 * 60));
    let e = fms
        .notify_payment(&creds, &notice(&sb, &po, PaymentResult::Succeeded), "rt-late")
        .await
        .unwrap_err();
    assert_eq!(e.fms_code(), Some(FmsCode::PreOrderTimeout), "{e}");
    assert_eq!(e.upstream_code(), Some(6006));
    assert!(!e.outcome_unknown() && !e.is_retryable());
    let st = fms.query_ord_status_and_email(&creds, po.id, "rt").await.unwrap();
    assert_eq!(st.status, PayStatus::Cancelled);
    assert_eq!(st.activation_code, None);
}

#[tokio::test]
async fn fms_payment_inside_the_window_and_failed_payment() {
    let sb = start().await;
    let fms = sb.fms();
    // 9 minutes after the pre-order is still in time.
    let (creds, po) = pre_order(&fms, "frank@example.com").await;
    sb.sandbox.advance_clock(Duration::from_secs(9 * 60));
    fms.notify_payment(&creds, &notice(&sb, &po, PaymentResult::Succeeded), "rt")
        .await
        .unwrap();

    // A failed payment is notified too and ends the pre-order as failed.
    let (creds2, po2) = pre_order(&fms, "grace@example.com").await;
    fms.notify_payment(&creds2, &notice(&sb, &po2, PaymentResult::Failed), "rt")
        .await
        .unwrap();
    let st = fms
        .query_ord_status_and_email(&creds2, po2.id, "rt")
        .await
        .unwrap();
    assert_eq!(st.status, PayStatus::Failed);

    // A price that does not match is 10009; an unknown order 10008.
    let (creds3, po3) = pre_order(&fms, "heidi@example.com").await;
    let mut n = notice(&sb, &po3, PaymentResult::Succeeded);
    n.paid = Money::new(
        po3.amount.amount() + rust_decimal::Decimal::ONE,
        po3.amount.currency(),
    );
    let e = fms.notify_payment(&creds3, &n, "rt").await.unwrap_err();
    assert_eq!(e.fms_code(), Some(FmsCode::PriceMismatch), "{e}");
    let mut n = notice(&sb, &po3, PaymentResult::Succeeded);
    n.pre_order_id = 1;
    let e = fms.notify_payment(&creds3, &n, "rt").await.unwrap_err();
    assert_eq!(e.fms_code(), Some(FmsCode::NoSuchOrder), "{e}");
}

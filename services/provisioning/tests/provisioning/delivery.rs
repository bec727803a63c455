//! The hand-over: QR codes that decode to the activation code, install links, the code
//! encrypted at rest and never logged.

use esim_proto::provisioning::v1 as pb;
use sea_orm::{ConnectionTrait, Statement};
use tonic::Code;

use crate::common::{Harness, TEST_KEY, databases, state};

/// Decodes the QR code in a PNG.
fn decode_qr(png_bytes: &[u8]) -> String {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    // 1-bit greyscale → 8-bit, so each pixel is one byte.
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(frame.color_type, png::ColorType::Grayscale);
    let (w, h, line) = (frame.width as usize, frame.height as usize, frame.line_size);
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| pixels[y * line + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().unwrap().1
}

async fn deliver(h: &Harness, name: &str, size: i32) -> Result<pb::EsimInstallation, tonic::Status> {
    h.client
        .clone()
        .deliver_esim(pb::DeliverEsimRequest {
            request_id: String::new(),
            name: name.into(),
            qr_code_size_pixels: size,
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn the_qr_png_decodes_to_exactly_the_activation_code_and_delivery_is_recorded() {
    for database in databases().await {
        let h = Harness::start(database, 3).await;
        let esim = h.provision("r1", "orders/deliver").await.unwrap();
        let got = deliver(&h, &esim.name, 0).await.unwrap();
        assert!(
            got.activation_code
                .starts_with("LPA:1$rsp-sft.sandbox.esim.test$"),
            "{}",
            h.label
        );
        assert_eq!(decode_qr(&got.qr_code_png), got.activation_code, "{}", h.label);
        assert_eq!(got.smdp_address, "rsp-sft.sandbox.esim.test");
        assert!(!got.matching_id.is_empty());
        assert!(got.activation_code.ends_with(&got.matching_id));
        assert!(!got.confirmation_code_required);
        assert!(got.qr_code_svg.contains("<svg"));
        assert_eq!(got.iccid, esim.iccid);
        let escaped = got.activation_code.replace(':', "%3A").replace('$', "%24");
        assert_eq!(
            got.ios_install_url,
            format!("https://esimsetup.apple.com/esim_qrcode_provisioning?carddata={escaped}")
        );
        assert_eq!(
            got.android_install_url,
            format!("https://esimsetup.android.com/esim_qrcode_provisioning?carddata={escaped}")
        );
        // A small size still decodes, the first delivery time is kept, and the eSIM is DELIVERED.
        let small = deliver(&h, &esim.name, 128).await.unwrap();
        assert_eq!(decode_qr(&small.qr_code_png), got.activation_code);
        assert_eq!(small.deliver_time, got.deliver_time);
        let now = h
            .client
            .clone()
            .get_esim(pb::GetEsimRequest {
                name: esim.name.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(state(&now), pb::EsimState::Delivered);
        assert_eq!(now.deliver_time, got.deliver_time);

        // Bad sizes are refused.
        let status = deliver(&h, &esim.name, 64).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("qr_code_size_pixels"));

        // At rest, the column holds ciphertext, never the code or its matching id.
        let backend = h.db.get_database_backend();
        let rows =
            h.db.query_all_raw(Statement::from_string(
                backend,
                "SELECT activation_code_enc FROM provisioning_esims",
            ))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        let stored: String = rows[0].try_get_by_index(0).unwrap();
        assert!(stored.starts_with("v1."), "{stored}");
        assert!(
            !stored.contains(&got.matching_id),
            "{}: plain text at rest",
            h.label
        );
        assert!(!stored.contains("LPA:"));
        h.stop().await;
    }
}

#[tokio::test]
async fn the_log_of_a_full_provision_holds_no_code_token_or_key() {
    // A process-wide subscriber: the service's tasks run on any worker thread, and every other
    // test of this binary logs into the same buffer, so they are checked too. The sandbox (the
    // upstream's stand-in) is left out: the log under test is ours.
    let buffer = crate::common::global_log();
    for database in databases().await {
        let h = Harness::start(database, 2).await;
        let esim = h.provision("log-1", "orders/log").await.unwrap();
        let got = deliver(&h, &esim.name, 0).await.unwrap();
        let addon = h
            .client
            .clone()
            .create_addon(pb::CreateAddonRequest {
                request_id: "log-addon".into(),
                parent: esim.name.clone(),
                addon: Some(pb::Addon {
                    sft_plan_id: "PLAN-TRAVEL-1GB-7D".into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(addon.state, pb::AddonState::Active as i32);
        h.client
            .clone()
            .suspend_esim(pb::SuspendEsimRequest {
                name: esim.name.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        h.stop().await;

        let log = buffer.text();
        assert!(log.contains("SFT eSIM provisioned"), "the log was captured");
        assert!(
            log.contains(&esim.iccid),
            "ICCIDs are not secret and help support"
        );
        for secret in [
            got.activation_code.as_str(),
            got.matching_id.as_str(),
            TEST_KEY,
            "sandbox-password",
            "sandbox-mp-secret",
            // Every JWT starts with the base64 of `{"`.
            "eyJ",
        ] {
            assert!(!log.contains(secret), "the log holds {secret:?}");
        }
        // Any activation code in the log (from any test) is the redacted `Debug` form.
        for (at, _) in log.match_indices("LPA:1$") {
            let rest = &log[at + "LPA:1$".len()..];
            let after_host = rest.split_once('$').map_or("", |(_, r)| r);
            assert!(
                after_host.starts_with("***"),
                "an activation code in the log: {}",
                &log[at..at + 60.min(log.len() - at)]
            );
        }
    }
}

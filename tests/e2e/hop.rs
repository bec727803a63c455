//! The paths `esim-bench hop` measures answer as a real call would: the echo direct, through the
//! bare tonic and hyper pass-throughs and through the gateway's forwarding stack (which also
//! stamps the call context, so the echo's answer must survive it unchanged), with the padded
//! answer of `--response-bytes` relayed whole and skipped by the client.

use esim_e2e::hop;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test]
async fn every_hop_path_reaches_the_echo() {
    let hops = hop::start(6000).await.expect("echo and forwarders start");
    for addr in [
        hops.echo,
        hops.pass_through,
        hops.hyper_pass_through,
        hops.gateway_stack,
    ] {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let answer = hop::call(channel)
            .await
            .unwrap_or_else(|status| panic!("{addr}: {status}"));
        assert_eq!(answer.status(), ServingStatus::Serving, "{addr}");
    }
}

/// `esim-bench catalog`'s undecoding client hands back the answer's bytes as sent, and still
/// fails on a gRPC error status.
#[tokio::test]
async fn an_opaque_call_keeps_the_answer_as_bytes_and_fails_on_an_error_status() {
    use esim_e2e::opaque::OpaqueCall;
    use prost::Message;
    use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

    let hops = hop::start(1000).await.expect("echo and forwarders start");
    let channel = Channel::from_shared(format!("http://{}", hops.hyper_pass_through))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let echo = OpaqueCall::new(
        channel.clone(),
        "/bench.Echo/Check",
        &HealthCheckRequest::default(),
    );
    let answer = echo.call().await.expect("the echo answers");
    // Status (2 bytes), then the padding's tag (1), length (2) and 1000 bytes.
    assert_eq!(answer.len(), 1005);
    let decoded = HealthCheckResponse::decode(answer).expect("the bytes are the echo's message");
    assert_eq!(decoded.status(), ServingStatus::Serving);

    // The echo answers any path; the gateway's stack routes only the echo's service.
    let routed = Channel::from_shared(format!("http://{}", hops.gateway_stack))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let missing = OpaqueCall::new(routed, "/bench.Missing/Check", &HealthCheckRequest::default());
    let status = missing.call().await.expect_err("no such service");
    assert_eq!(status.code(), tonic::Code::Unimplemented);
}

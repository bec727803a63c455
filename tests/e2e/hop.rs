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

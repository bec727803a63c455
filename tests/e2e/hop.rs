//! The paths `esim-bench hop` measures answer as a real call would: the echo direct, through the
//! bare pass-through and through the gateway's forwarding stack (which also stamps the call
//! context, so the echo's answer must survive it unchanged).

use esim_e2e::hop;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test]
async fn every_hop_path_reaches_the_echo() {
    let hops = hop::start().await.expect("echo and forwarders start");
    for addr in [hops.echo, hops.pass_through, hops.gateway_stack] {
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

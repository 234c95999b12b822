//! The README's run command in miniature: a real gateway process with an in-memory store answers on its
//! public port and its admin port, and stops on SIGTERM.

mod common;

use common::*;
use std::time::Duration;

fn start_gateway() -> GatewayProcess {
    GatewayProcess::start_config(&[], |port, admin, dir| {
        format!(
            "server:\n  listen: ['127.0.0.1:{port}']\n  admin_listen: '127.0.0.1:{admin}'\n  public_url: http://127.0.0.1:{port}\n  upgrade_sock: {dir}/upgrade.sock\n  pid_file: {dir}/gateway.pid\n  grace_period_seconds: 0\n  graceful_shutdown_timeout_seconds: 1\n",
            dir = dir.display()
        )
    })
}

#[test]
fn gateway_answers_on_its_port_and_admin_port() {
    let gateway = start_gateway();
    let (status, body) = raw_request(&gateway.admin, "/healthz", &[]);
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, _) = raw_request(&gateway.admin, "/readyz", &[]);
    assert_eq!(status, 200);
    let (status, metrics) = raw_request(&gateway.admin, "/metrics", &[]);
    assert_eq!(status, 200);
    assert!(metrics.contains("ibgw_build_info"), "{metrics}");
    assert!(metrics.contains("ibgw_active_sessions 0"), "{metrics}");
    let (status, body) = raw_request(&gateway.base, "/no-such-endpoint", &[]);
    assert_eq!(status, 404);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "not_found");
}

#[test]
fn gateway_without_a_signing_key_warns_loudly() {
    let gateway = start_gateway();
    let log = gateway.log();
    assert!(log.contains("NO SIGNING KEY CONFIGURED"), "{log}");
    assert!(log.contains("will NOT be accepted by other gateway instances"), "{log}");
}

#[test]
fn sigterm_stops_the_gateway() {
    let mut gateway = start_gateway();
    gateway.signal("TERM");
    let status = gateway.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
}

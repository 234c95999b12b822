//! The Redis store behind Redis Sentinel: it finds the master through the sentinels and, after a failover
//! (the master dies, the sentinel promotes the replica), finds the new master by itself.
//! The test starts its own master, replica and sentinel on free ports.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ib_oauth_gateway::config::RedisMode;
use ib_oauth_gateway::store::redis::RedisStore;
use ib_oauth_gateway::store::{now_unix, TokenStore};
use support::*;

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn redis(port: u16, dir: &std::path::Path, extra: &[&str]) -> Process {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (./scripts/test.sh installs it)");
    wait_listening(port);
    Process(child)
}

fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli").args(["-p", &port.to_string()]).args(args).output().unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn store_follows_the_master_through_a_sentinel_failover() {
    let dir = tempfile::tempdir().unwrap();
    let (master_port, replica_port, sentinel_port) = (free_port(), free_port(), free_port());
    let mut master = Some(redis(master_port, dir.path(), &[]));
    let replica_dir = dir.path().join("replica");
    std::fs::create_dir_all(&replica_dir).unwrap();
    let _replica = redis(replica_port, &replica_dir, &["--replicaof", "127.0.0.1", &master_port.to_string()]);
    let sentinel_conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &sentinel_conf,
        format!(
            "port {sentinel_port}\nbind 127.0.0.1\nsentinel monitor ibgw 127.0.0.1 {master_port} 1\n\
             sentinel down-after-milliseconds ibgw 1000\nsentinel failover-timeout ibgw 5000\n"
        ),
    )
    .unwrap();
    let sentinel = Command::new("redis-server")
        .arg(&sentinel_conf)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _sentinel = Process(sentinel);
    wait_listening(sentinel_port);
    // Wait until the replica is in sync, so that what the store writes survives the failover.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cli(replica_port, &["INFO", "replication"]).contains("master_link_status:up") {
        assert!(Instant::now() < deadline, "replica did not sync");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut config =
        redis_config(RedisMode::Sentinel, vec![format!("redis://127.0.0.1:{sentinel_port}")], &unique_prefix());
    config.sentinel_master = "ibgw".into();
    let store = RedisStore::connect(&config).await.expect("connect through the sentinel");
    let now = now_unix();
    let (session, _) = start_session(&store, now).await;
    assert_eq!(store.get_session(&session.id).await.unwrap().unwrap().id, session.id);
    // Make sure the write reached the replica before the master dies.
    assert_eq!(cli(master_port, &["WAIT", "1", "2000"]), "1");

    drop(master.take());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match store.get_session(&session.id).await {
            Ok(Some(found)) => {
                assert_eq!(found.id, session.id);
                break;
            }
            Ok(None) => panic!("the session was lost in the failover"),
            Err(_) => {
                assert!(Instant::now() < deadline, "the store did not find the new master");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    assert!(cli(replica_port, &["INFO", "replication"]).contains("role:master"), "the replica was promoted");
    // Writes go to the new master too.
    let (second, _) = start_session(&store, now_unix()).await;
    assert!(store.get_session(&second.id).await.unwrap().is_some());
}

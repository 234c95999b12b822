//! The Redis store behind Redis Sentinel: it finds the master through the sentinels and, after a failover
//! (the master dies, the sentinel promotes the replica), finds the new master by itself.
//! The test starts its own master, replica and sentinel on free ports.

mod common;

use std::time::{Duration, Instant};

use common::store::*;
use common::RedisServer;
use ib_oauth_gateway::config::RedisMode;
use ib_oauth_gateway::store::redis::RedisStore;
use ib_oauth_gateway::store::{now_unix, TokenStore};

#[tokio::test(flavor = "multi_thread")]
async fn store_follows_the_master_through_a_sentinel_failover() {
    let master = RedisServer::start();
    let master_port = master.port;
    let mut master = Some(master);
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master_port.to_string()]);
    let sentinel = RedisServer::sentinel(&format!(
        "sentinel monitor ibgw 127.0.0.1 {master_port} 1\n\
         sentinel down-after-milliseconds ibgw 1000\nsentinel failover-timeout ibgw 5000\n"
    ));
    // Wait until the replica is in sync, so that what the store writes survives the failover.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !replica.cli(&["INFO", "replication"]).contains("master_link_status:up") {
        assert!(Instant::now() < deadline, "replica did not sync");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut config = redis_config(RedisMode::Sentinel, vec![sentinel.url()], &unique_prefix());
    config.sentinel_master = "ibgw".into();
    let store = RedisStore::connect(&config).await.expect("connect through the sentinel");
    let now = now_unix();
    let (session, _) = start_session(&store, now).await;
    assert_eq!(store.get_session(&session.id).await.unwrap().unwrap().id, session.id);
    // Make sure the write reached the replica before the master dies.
    assert_eq!(master.as_ref().unwrap().cli(&["WAIT", "1", "2000"]).trim(), "1");

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
    assert!(replica.cli(&["INFO", "replication"]).contains("role:master"), "the replica was promoted");
    // Writes go to the new master too.
    let (second, _) = start_session(&store, now_unix()).await;
    assert!(store.get_session(&second.id).await.unwrap().is_some());
}

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
    // This test is about reads reaching Redis across the failover; a cached copy would answer before the
    // sentinel has promoted the replica (the cache has its own failover test below).
    config.session_cache_max_entries = 0;
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

/// The invalidation subscriber follows the master through a failover that leaves the old master running (it is
/// demoted to a replica and still answers `PING`): the subscription moves to the promoted node, and a session
/// ended after the switch is refused by the instance that had it cached.
#[tokio::test(flavor = "multi_thread")]
async fn the_invalidation_subscriber_follows_the_master_when_the_old_one_is_demoted_but_alive() {
    let common::redis::SentinelSet { master, replica, sentinel } = common::redis::SentinelSet::start();
    let prefix = unique_prefix();
    let mut config = redis_config(RedisMode::Sentinel, vec![sentinel.url()], &prefix);
    config.sentinel_master = "ibgw".into();
    config.session_cache_max_age_ms = 600_000;
    let store = RedisStore::connect(&config).await.expect("connect through the sentinel");
    let channel = format!("{prefix}:invalidate");
    let subscribers = |server: &RedisServer| -> u32 {
        let reply = server.cli(&["PUBSUB", "NUMSUB", &channel]);
        reply.lines().nth(1).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
    };
    let wait_for = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !check() {
            assert!(Instant::now() < deadline, "never happened: {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("the subscriber is on the master", &|| subscribers(&master) == 1);

    let now = now_unix();
    let (session, _) = start_session(&store, now).await;
    assert!(store.get_session(&session.id).await.unwrap().is_some(), "read once: cached");
    assert_eq!(sentinel.cli(&["SENTINEL", "FAILOVER", "ibgw"]).trim(), "OK");
    wait_for("the replica is promoted", &|| replica.cli(&["ROLE"]).starts_with("master"));
    wait_for("the old master is demoted and alive", &|| master.cli(&["ROLE"]).starts_with("slave"));
    wait_for("the subscriber moved to the new master", &|| subscribers(&replica) == 1);
    assert_eq!(subscribers(&master), 0, "nothing left on the demoted node");

    // Another instance ends the session on the new master: this one's cached copy goes.
    use ib_oauth_gateway::session::SessionState;
    // The first read after the switch may find the old connection closed (the store then asks the sentinels).
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.get_session(&session.id).await.map(|found| found.is_none()).unwrap_or(true) {
        assert!(Instant::now() < deadline, "the store never read the session from the new master");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let other = RedisStore::connect(&config).await.expect("a second instance");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match other.end_session(&session.id, SessionState::Revoked).await {
            Ok(ended) => {
                assert!(ended);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "the store never wrote to the new master: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.get_session(&session.id).await.unwrap().unwrap().state != SessionState::Revoked {
        assert!(Instant::now() < deadline, "the cached copy outlived the session's end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

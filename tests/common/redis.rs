//! Private redis-server processes (standalone, replica, sentinel) on free ports, killed on drop.
//!
//! Tests that stop, restart or count commands on Redis use one of these, never the shared servers of
//! `IBGW_TEST_REDIS_URL` (see [`super::store`]).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ports::free_port;

/// A redis-server this test started (not daemonized) in its own directory, killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Arguments after the port, e.g. `--replicaof 127.0.0.1 6379`.
    extra: Vec<String>,
    /// Sentinel directives (after `port` and `bind`); `None` for a data server.
    sentinel: Option<String>,
}

impl RedisServer {
    /// A standalone server that keeps nothing on disk.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with `extra` arguments after the usual ones (e.g. `["--replicaof", "127.0.0.1", "6379"]`).
    pub fn start_with(extra: &[&str]) -> Self {
        Self::launch(extra.iter().map(|a| a.to_string()).collect(), None)
    }

    /// A sentinel with these directives (e.g. `sentinel monitor NAME 127.0.0.1 PORT 1\n…`); its config file
    /// (which a sentinel rewrites) is in its own directory.
    pub fn sentinel(directives: &str) -> Self {
        Self::launch(Vec::new(), Some(directives.to_string()))
    }

    /// Tries a few free ports: a port taken between the check and the bind makes the server exit at once.
    fn launch(extra: Vec<String>, sentinel: Option<String>) -> Self {
        let mut last = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut server =
                RedisServer { child: None, port: free_port(), dir, extra: extra.clone(), sentinel: sentinel.clone() };
            match server.try_restart() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("could not start a private redis-server: {last}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no shutdown courtesy) and waits for it. The port stays this server's.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if it runs and starts it again on the same port (with no data: nothing is saved).
    pub fn restart(&mut self) {
        if let Err(e) = self.try_restart() {
            panic!("could not restart redis-server on port {}: {e}", self.port);
        }
    }

    fn try_restart(&mut self) -> Result<(), String> {
        self.stop();
        let mut command = Command::new("redis-server");
        match &self.sentinel {
            Some(directives) => {
                let conf: PathBuf = self.dir.path().join("sentinel.conf");
                let text =
                    format!("port {}\nbind 127.0.0.1\ndir {}\n{directives}", self.port, self.dir.path().display());
                std::fs::write(&conf, text).map_err(|e| format!("write {}: {e}", conf.display()))?;
                command.arg(&conf).arg("--sentinel");
            }
            None => {
                command
                    .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                    .arg("--dir")
                    .arg(self.dir.path())
                    .args(&self.extra);
            }
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server (./scripts/test.sh installs it): {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(format!("redis-server on port {} exited at once ({status}): port taken?", self.port));
            }
            if ping(self.port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(format!("redis-server on port {} did not answer PING within 10 s", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a command with redis-cli and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A master, a replica in sync with it, and one sentinel that monitors them as `ibgw` and fails over one second
/// after the master stops answering (or at once on `SENTINEL FAILOVER ibgw`).
pub struct SentinelSet {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinel: RedisServer,
}

impl SentinelSet {
    /// Returns once the replica is in sync, so that what is written to the master survives a failover.
    pub fn start() -> Self {
        let master = RedisServer::start();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
        let sentinel = RedisServer::sentinel(&format!(
            "sentinel monitor ibgw 127.0.0.1 {} 1\nsentinel down-after-milliseconds ibgw 1000\n\
             sentinel failover-timeout ibgw 5000\n",
            master.port
        ));
        let deadline = Instant::now() + Duration::from_secs(15);
        while !replica.cli(&["INFO", "replication"]).contains("master_link_status:up") {
            assert!(Instant::now() < deadline, "the replica did not sync");
            std::thread::sleep(Duration::from_millis(100));
        }
        SentinelSet { master, replica, sentinel }
    }
}

/// Runs a command with redis-cli against the server on `port` and returns its output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output().unwrap();
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// Whether the server on `port` answers `PING` with `PONG` within a second.
fn ping(port: u16) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        stream.write_all(b"PING\r\n")?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply)?;
        Ok(&reply == b"+PONG\r\n")
    };
    attempt().unwrap_or(false)
}

/// Three masters of a private Cluster (no replicas, every slot served), for tests that restart a node.
pub struct ClusterSet {
    pub nodes: Vec<RedisServer>,
}

impl ClusterSet {
    /// Returns once every node reports `cluster_state:ok`. A restarted node keeps its `nodes.conf` (in its
    /// directory) and so comes back as the same master of the same slots, empty.
    pub fn start() -> Self {
        let args =
            ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"];
        let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::start_with(&args)).collect();
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(output.status.success(), "cluster create: {}", String::from_utf8_lossy(&output.stdout));
        let set = ClusterSet { nodes };
        set.wait_until_ok();
        set
    }

    /// Waits (up to 30 s) until every node reports `cluster_state:ok`.
    pub fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.nodes.iter().all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")) {
            assert!(Instant::now() < deadline, "the private cluster is not ok after 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }

    /// The index of the node that serves `key`'s slot (the others answer `MOVED`).
    pub fn owner_of(&self, key: &str) -> usize {
        self.nodes.iter().position(|n| !n.cli(&["TYPE", key]).contains("MOVED")).expect("a node serves the slot")
    }
}

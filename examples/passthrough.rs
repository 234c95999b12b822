//! A plain Pingora pass-through, built from the same tree and dependency versions as the gateway: the
//! baseline `benches/load.sh` compares the gateway against. It forwards every request unchanged to one
//! upstream over Pingora's pooled connections; no authentication, no rewriting, no store.
//!
//! Usage: `passthrough LISTEN_ADDR UPSTREAM_ADDR [THREADS]` (both `127.0.0.1:PORT`; THREADS defaults to 2,
//! set it to the gateway's `server.threads` for a fair comparison).

/// The gateway's allocator (see `src/main.rs`), so that the bench compares like with like: built with the
/// `system-allocator` feature it is glibc's malloc, as the gateway's glibc row is.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

struct PassThrough {
    upstream: std::net::SocketAddr,
}

#[async_trait]
impl ProxyHttp for PassThrough {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Self::CTX) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: passthrough LISTEN_ADDR UPSTREAM_ADDR [THREADS]");
        std::process::exit(2);
    };
    let upstream = upstream.parse().unwrap_or_else(|e| {
        eprintln!("upstream address: {e}");
        std::process::exit(2);
    });
    let threads = match args.get(3).map(|t| t.parse::<usize>()) {
        None => 2,
        Some(Ok(threads)) if threads > 0 => threads,
        Some(_) => {
            eprintln!("THREADS must be a positive number");
            std::process::exit(2);
        }
    };
    let conf = ServerConf {
        threads,
        upgrade_sock: format!("/tmp/passthrough-{}.sock", std::process::id()),
        pid_file: format!("/tmp/passthrough-{}.pid", std::process::id()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, PassThrough { upstream });
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever()
}

//! An HTTPS server of Client ID Metadata Documents on 127.0.0.1, with a throwaway CA (`pki`): each path answers
//! as the test says (status, headers, body, delays, trickling), and every request is counted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls;

/// What the document server answers for a path, and how.
#[derive(Clone)]
pub struct Answer {
    pub status: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// Wait before the status line.
    pub delay: Duration,
    /// Send no `Content-Length` (the body ends when the connection closes).
    pub no_length: bool,
    /// Send the body one byte at a time with this pause between bytes.
    pub trickle: Option<Duration>,
}

impl Answer {
    pub fn json(body: serde_json::Value) -> Self {
        Answer {
            status: "200 OK",
            headers: vec![("Content-Type", "application/json".into())],
            body: body.to_string().into_bytes(),
            delay: Duration::ZERO,
            no_length: false,
            trickle: None,
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
}

pub struct DocumentServer {
    pub origin: String,
    pub ca_pem: Vec<u8>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    pki: super::pki::TestPki,
}

impl DocumentServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().get(path).copied().unwrap_or(0)
    }
}

/// Starts the HTTPS document server; `answers` gets the origin and returns the answer per path.
pub async fn document_server(answers: impl FnOnce(&str) -> HashMap<&'static str, Answer>) -> DocumentServer {
    ib_oauth_gateway::ib::install_crypto_provider();
    let pki = super::pki::test_pki();
    let chain: Vec<_> = rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(&pki.cert).unwrap()))
        .collect::<Result<_, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(std::fs::File::open(&pki.key).unwrap()))
        .unwrap()
        .unwrap();
    let mut config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let answers = Arc::new(answers(&origin));
    let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, answers, hits) = (acceptor.clone(), answers.clone(), counted.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else { return };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let path = text.split(' ').nth(1).unwrap_or("/").to_string();
                *hits.lock().entry(path.clone()).or_default() += 1;
                let answer = answers
                    .get(path.as_str())
                    .cloned()
                    .unwrap_or(Answer { status: "404 Not Found", ..Answer::json(json!({})) });
                tokio::time::sleep(answer.delay).await;
                let mut head = format!("HTTP/1.1 {}\r\nConnection: close\r\n", answer.status);
                for (name, value) in &answer.headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                if !answer.no_length {
                    head.push_str(&format!("Content-Length: {}\r\n", answer.body.len()));
                }
                head.push_str("\r\n");
                if tls.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                match answer.trickle {
                    None => {
                        let _ = tls.write_all(&answer.body).await;
                    }
                    Some(pause) => {
                        for byte in &answer.body {
                            if tls.write_all(&[*byte]).await.is_err() || tls.flush().await.is_err() {
                                return;
                            }
                            tokio::time::sleep(pause).await;
                        }
                    }
                }
                let _ = tls.shutdown().await;
            });
        }
    });
    let ca_pem = std::fs::read(&pki.ca).unwrap();
    DocumentServer { origin, ca_pem, hits, pki }
}

impl DocumentServer {
    /// The CA file the server's certificate chains to (for a gateway's `test_only_trusted_ca_file`).
    pub fn ca_file(&self) -> &std::path::Path {
        &self.pki.ca
    }
}

//! A throwaway PKI for TLS tests: a CA and a server certificate for `127.0.0.1` and `localhost`.

use std::path::PathBuf;

use ib_oauth_gateway::mock::{self, MockHandle, MockSettings};
use tokio::net::TcpListener;

pub struct TestPki {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A throwaway CA and a server certificate it signed for `127.0.0.1` and `localhost`.
pub fn test_pki() -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "ib-oauth-gateway test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().expect("server key");
    let mut server_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("server params");
    server_params.distinguished_name.push(DnType::CommonName, "mock IntelligenceBank platform");
    let server_cert = server_params.signed_by(&server_key, &issuer).expect("server certificate");

    let write = |name: &str, pem: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).expect("write PEM");
        path
    };
    TestPki {
        ca: write("ca.pem", ca_cert.pem()),
        cert: write("server.pem", server_cert.pem()),
        key: write("server-key.pem", server_key.serialize_pem()),
        _dir: dir,
    }
}

pub async fn start_tls_mock(pki: &TestPki) -> MockHandle {
    start_tls_mock_with(pki, MockSettings::default()).await
}

pub async fn start_tls_mock_with(pki: &TestPki, settings: MockSettings) -> MockHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    mock::serve(listener, Some((pki.cert.clone(), pki.key.clone())), settings).await.expect("TLS mock")
}

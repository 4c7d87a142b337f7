//! Shared helpers: an in-process cocoon-kbs on 127.0.0.1 with sample evidence.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use attestation::attester::Attester;
use attestation::{AttestationError, Tee};
use cocoon_kbs::{KbsConfig, KbsServer};
use kbs_client::{JwsSigningKey, KbsClient, KbsClientBuilder};

pub const COCO_DEV_POLICY: &str = include_str!("../../config/policy-coco-dev.rego");

pub struct TestKbs {
    pub server: KbsServer,
    pub admin_key: JwsSigningKey,
    pub dir: tempfile::TempDir,
}

/// Start a KBS; `coco_dev` selects the coco-dev resource policy (else the built-in
/// default); `tweak` edits the config before start.
pub async fn start(coco_dev: bool, tweak: impl FnOnce(&mut KbsConfig)) -> TestKbs {
    let dir = tempfile::tempdir().unwrap();
    let admin_key = JwsSigningKey::generate("EdDSA").unwrap();
    let admin_pub = dir.path().join("admin.pub.pem");
    std::fs::write(&admin_pub, admin_key.verifying_key().to_pem().unwrap()).unwrap();
    let mut config = KbsConfig::for_loopback(dir.path().join("resources"));
    config.admin_public_key_file = Some(admin_pub);
    config.allow_sample = true;
    if coco_dev {
        let p = dir.path().join("policy.rego");
        std::fs::write(&p, COCO_DEV_POLICY).unwrap();
        config.resource_policy_file = Some(p);
    }
    tweak(&mut config);
    let server = KbsServer::start(config).await.unwrap();
    TestKbs {
        server,
        admin_key,
        dir,
    }
}

impl TestKbs {
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn put_resource(&self, path: &str, bytes: &[u8]) {
        let p = self.server.state.resources.root().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    pub fn admin_token(&self) -> String {
        kbs_client::jws::admin_token(&self.admin_key, "admin", "test", 300).unwrap()
    }

    pub fn client(&self) -> KbsClient {
        sample_client(&self.url())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

pub fn sample_client(url: &str) -> KbsClient {
    KbsClientBuilder::new(url).tee(Tee::Sample).build().unwrap()
}

/// Sample evidence over a report_data that differs from the one asked for.
pub struct WrongReportData;

impl Attester for WrongReportData {
    fn tee(&self) -> Tee {
        Tee::Sample
    }
    fn evidence(&self, report_data: &[u8]) -> Result<String, AttestationError> {
        let mut rd = report_data.to_vec();
        rd[0] ^= 0x80;
        attestation::attester::sample::SampleAttester.evidence(&rd)
    }
}

pub fn wrong_report_data_client(url: &str) -> KbsClient {
    KbsClientBuilder::new(url)
        .attester(Arc::new(WrongReportData))
        .build()
        .unwrap()
}

/// Send raw bytes over TCP and return (status, body): for paths an HTTP client
/// would normalise (`..`).
pub async fn raw_http(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

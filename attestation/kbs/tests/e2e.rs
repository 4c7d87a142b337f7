//! kbs-client ↔ cocoon-kbs on 127.0.0.1 with sample evidence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use kbs_client::protocol::{Handshake, HttpRequest, Method};
use kbs_client::{HttpTransport, KbsErrorType, ResourceUri, TeeKeyAlgorithm, TeeKeyPair};

fn uri(p: &str) -> ResourceUri {
    ResourceUri::from_resource_path(p).unwrap()
}

#[tokio::test]
async fn coco_dev_policy_releases_default_policy_denies_sample() {
    let kbs = start(true, |_| {}).await;
    kbs.put_resource("default/key/k1", b"top secret");
    let mut c = kbs.client();
    let got = c.get_resource(&uri("default/key/k1")).await.unwrap();
    assert_eq!(got.as_slice(), b"top secret");
    assert_eq!(kbs.server.state.stats.released.load(Ordering::Relaxed), 1);

    let kbs = start(false, |_| {}).await;
    kbs.put_resource("default/key/k1", b"top secret");
    let mut c = kbs.client();
    // Attestation itself succeeds (allow_sample), the default policy refuses.
    c.attest().await.unwrap();
    let e = c.get_resource(&uri("default/key/k1")).await.unwrap_err();
    assert_eq!(e.kbs_error_type(), Some(&KbsErrorType::PolicyDeny), "{e}");
    assert_eq!(e.status(), Some(401));
    // PolicyDeny is not retried with a new handshake.
    assert_eq!(c.handshakes(), 1);
    assert_eq!(kbs.server.state.stats.released.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn sample_refused_at_attestation_unless_allowed() {
    let kbs = start(true, |c| c.allow_sample = false).await;
    let e = kbs.client().attest().await.unwrap_err();
    assert_eq!(
        e.kbs_error_type(),
        Some(&KbsErrorType::AttestationError),
        "{e}"
    );
    assert!(e.to_string().contains("tee"), "{e}");
}

#[tokio::test]
async fn rsa_tee_key_and_bearer_token_retrieval() {
    let kbs = start(true, |_| {}).await;
    kbs.put_resource("r/t/g", b"rsa secret");
    let mut c = kbs_client::KbsClientBuilder::new(&kbs.url())
        .tee(attestation::Tee::Sample)
        .key_algorithm(TeeKeyAlgorithm::RsaOaep256)
        .build()
        .unwrap();
    assert_eq!(
        c.get_resource(&uri("r/t/g")).await.unwrap().as_slice(),
        b"rsa secret"
    );
    // The token alone (no cookie), as trustee's `--attestation-token` does.
    let token = c.attest().await.unwrap();
    let pem = c.tee_key().to_pkcs8_pem().unwrap();
    let other = kbs_client::KbsClientBuilder::new(&kbs.url())
        .tee(attestation::Tee::Sample)
        .tee_key(TeeKeyPair::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    assert_eq!(
        other
            .get_resource_with_token(&uri("r/t/g"), &token)
            .await
            .unwrap()
            .as_slice(),
        b"rsa secret"
    );
    // A forged token (payload changed) is refused.
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!("{}.{}x.{}", parts[0], parts[1], parts[2]);
    let e = other
        .get_resource_with_token(&uri("r/t/g"), &forged)
        .await
        .unwrap_err();
    assert_eq!(
        e.kbs_error_type(),
        Some(&KbsErrorType::TokenVerifierError),
        "{e}"
    );
}

#[tokio::test]
async fn wrong_report_data_refused() {
    let kbs = start(true, |_| {}).await;
    kbs.put_resource("default/key/k1", b"s");
    let mut c = wrong_report_data_client(&kbs.url());
    let e = c.get_resource(&uri("default/key/k1")).await.unwrap_err();
    assert_eq!(
        e.kbs_error_type(),
        Some(&KbsErrorType::AttestationError),
        "{e}"
    );
    assert!(e.to_string().contains("report_data"), "{e}");
    assert_eq!(kbs.server.state.stats.released.load(Ordering::Relaxed), 0);
}

async fn auth_and_attest_request(t: &HttpTransport, key: &TeeKeyPair) -> HttpRequest {
    let mut hs = Handshake::new(attestation::Tee::Sample, None);
    let resp = t.send(&hs.auth_request().unwrap()).await.unwrap();
    hs.on_auth_response(&resp, &attestation::attester::sample::SampleAttester, key)
        .unwrap()
}

#[tokio::test]
async fn replayed_nonce_and_replayed_attestation_refused() {
    let kbs = start(true, |_| {}).await;
    let t = HttpTransport::new(&kbs.url(), &[]).unwrap();
    let key = TeeKeyPair::generate(TeeKeyAlgorithm::EcP256).unwrap();
    let attest = auth_and_attest_request(&t, &key).await;
    let ok = t.send(&attest).await.unwrap();
    assert_eq!(ok.status, 200);
    // Same session, same nonce, same evidence: refused (nonce already used).
    let again = t.send(&attest).await.unwrap();
    assert_eq!(again.status, 401);
    let e = kbs_client::KbsClientError::from_response(again.status, &again.body);
    assert_eq!(e.kbs_error_type(), Some(&KbsErrorType::AttestationError));
    assert!(e.to_string().contains("nonce"), "{e}");

    // The old attestation replayed onto a fresh session (new cookie, new nonce).
    let mut hs = Handshake::new(attestation::Tee::Sample, None);
    let fresh = t.send(&hs.auth_request().unwrap()).await.unwrap();
    let cookie = kbs_client::protocol::session_cookie(&fresh).unwrap();
    let mut replay = attest.clone();
    replay.headers.retain(|(n, _)| n != "Cookie");
    replay
        .headers
        .push(("Cookie".into(), format!("kbs-session-id={cookie}")));
    let r = t.send(&replay).await.unwrap();
    assert_eq!(r.status, 401);
    let e = kbs_client::KbsClientError::from_response(r.status, &r.body);
    assert!(e.to_string().contains("nonce"), "{e}");
    // That failed attempt burned the fresh session's nonce too.
    let r = t.send(&replay).await.unwrap();
    assert_eq!(r.status, 401);

    // An attestation without any session.
    let mut no_cookie = attest.clone();
    no_cookie.headers.retain(|(n, _)| n != "Cookie");
    assert_eq!(t.send(&no_cookie).await.unwrap().status, 401);
}

#[tokio::test]
async fn expired_session_refused() {
    let kbs = start(true, |c| c.session_timeout_secs = 1).await;
    kbs.put_resource("a/b/c", b"x");
    let t = HttpTransport::new(&kbs.url(), &[]).unwrap();
    let key = TeeKeyPair::generate(TeeKeyAlgorithm::EcP256).unwrap();
    let attest = auth_and_attest_request(&t, &key).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = t.send(&attest).await.unwrap();
    assert_eq!(r.status, 401);
    let e = kbs_client::KbsClientError::from_response(r.status, &r.body);
    assert!(e.to_string().contains("expired"), "{e}");

    // An attested session expires too: cookie-only access is then refused.
    let attest = auth_and_attest_request(&t, &key).await;
    assert_eq!(t.send(&attest).await.unwrap().status, 200);
    let cookie = attest
        .headers
        .iter()
        .find(|(n, _)| n == "Cookie")
        .unwrap()
        .1
        .clone();
    let get = HttpRequest {
        method: Method::Get,
        path: "/kbs/v0/resource/a/b/c".into(),
        headers: vec![("Cookie".into(), cookie)],
        body: vec![],
    };
    assert_eq!(t.send(&get).await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = t.send(&get).await.unwrap();
    let e = kbs_client::KbsClientError::from_response(r.status, &r.body);
    assert_eq!(
        e.kbs_error_type(),
        Some(&KbsErrorType::TokenNotFound),
        "{e}"
    );
}

#[tokio::test]
async fn unknown_resource_and_bad_paths() {
    let kbs = start(true, |_| {}).await;
    let mut c = kbs.client();
    let e = c
        .get_resource(&uri("default/key/missing"))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404));
    assert_eq!(
        e.kbs_error_type(),
        Some(&KbsErrorType::ResourceNotFound),
        "{e}"
    );

    // Traversal on the wire (a client library would normalise these away).
    std::fs::write(kbs.dir().join("outside"), b"host secret").unwrap();
    for path in [
        "/kbs/v0/resource/../../outside",
        "/kbs/v0/resource/a/../outside",
        "/kbs/v0/resource/a/b/..",
        "/kbs/v0/resource/..%2f..%2f/outside/x",
        "/kbs/v0/resource/a//c",
        "/kbs/v0/resource/a/b/c/d",
    ] {
        let (status, body) = raw_http(
            kbs.server.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains("InvalidRequestPath"), "{path}: {body}");
    }
    let (status, body) = raw_http(
        kbs.server.addr,
        "GET /kbs/v0/nosuchplugin/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404);
    assert!(body.contains("PluginNotFound"), "{body}");
    let (status, _) = raw_http(
        kbs.server.addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn admin_endpoints_need_a_valid_admin_token() {
    let kbs = start(false, |_| {}).await;
    let url = kbs.url();
    let no_token = kbs_client::KbsAdminClient::new(&url, None, &[]).unwrap();
    let e = no_token
        .set_resource("a/b/c", b"x".to_vec())
        .await
        .unwrap_err();
    assert_eq!(
        e.kbs_error_type(),
        Some(&KbsErrorType::AdminAuthAccess),
        "{e}"
    );
    assert_eq!(e.status(), Some(401));
    let e = no_token
        .set_resource_policy(COCO_DEV_POLICY.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(
        e.kbs_error_type(),
        Some(&KbsErrorType::AdminAuthAccess),
        "{e}"
    );

    // Signed by another Ed25519 key.
    let rogue = kbs_client::JwsSigningKey::generate("EdDSA").unwrap();
    let bad = kbs_client::jws::admin_token(&rogue, "admin", "x", 300).unwrap();
    let bad_client = kbs_client::KbsAdminClient::new(&url, Some(bad), &[]).unwrap();
    let e = bad_client
        .set_resource("a/b/c", b"x".to_vec())
        .await
        .unwrap_err();
    assert_eq!(
        e.kbs_error_type(),
        Some(&KbsErrorType::AdminAuthAccess),
        "{e}"
    );
    let e = bad_client
        .set_attestation_policy(b"package p\n", "rego", "default")
        .await
        .unwrap_err();
    assert_eq!(
        e.kbs_error_type(),
        Some(&KbsErrorType::AdminAuthAccess),
        "{e}"
    );
    // Right key, wrong role.
    let wrong_role = kbs_client::jws::admin_token(&kbs.admin_key, "viewer", "x", 300).unwrap();
    let e = kbs_client::KbsAdminClient::new(&url, Some(wrong_role), &[])
        .unwrap()
        .set_resource("a/b/c", b"x".to_vec())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("role"), "{e}");
    // Expired.
    let expired = kbs_client::jws::admin_token(&kbs.admin_key, "admin", "x", -10).unwrap();
    assert!(
        kbs_client::KbsAdminClient::new(&url, Some(expired), &[])
            .unwrap()
            .set_resource("a/b/c", b"x".to_vec())
            .await
            .is_err()
    );
    assert!(!kbs.server.state.resources.root().join("a/b/c").exists());

    // Valid token: resource, resource policy and attestation policy are set.
    let admin = kbs_client::KbsAdminClient::new(&url, Some(kbs.admin_token()), &[]).unwrap();
    admin
        .set_resource("a/b/c", b"admin-set".to_vec())
        .await
        .unwrap();
    let e = admin
        .set_resource("a/../c", b"x".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(e, kbs_client::KbsClientError::InvalidUri { .. }),
        "{e}"
    );
    let e = admin
        .set_resource_policy(b"package policy\nallow if {")
        .await
        .unwrap_err();
    assert_eq!(
        e.kbs_error_type(),
        Some(&KbsErrorType::ParsePolicyError),
        "{e}"
    );
    let mut c = kbs.client();
    let e = c.get_resource(&uri("a/b/c")).await.unwrap_err();
    assert_eq!(e.kbs_error_type(), Some(&KbsErrorType::PolicyDeny));
    admin
        .set_resource_policy(COCO_DEV_POLICY.as_bytes())
        .await
        .unwrap();
    assert_eq!(
        c.get_resource(&uri("a/b/c")).await.unwrap().as_slice(),
        b"admin-set"
    );
    admin
        .set_attestation_policy(AFFIRM_ALL.as_bytes(), "rego", "default")
        .await
        .unwrap();
    assert_eq!(
        kbs.server.state.attestation_policy("default").as_deref(),
        Some(AFFIRM_ALL)
    );

    // DELETE (trustee's `config delete-resource`): refused without or with a foreign
    // token, then done with the admin token; a second delete is ResourceNotFound.
    let e = no_token.delete_resource("a/b/c").await.unwrap_err();
    assert_eq!(
        e.kbs_error_type(),
        Some(&KbsErrorType::AdminAuthAccess),
        "{e}"
    );
    let e = bad_client.delete_resource("a/b/c").await.unwrap_err();
    assert_eq!(
        e.kbs_error_type(),
        Some(&KbsErrorType::AdminAuthAccess),
        "{e}"
    );
    assert!(kbs.server.state.resources.root().join("a/b/c").exists());
    admin.delete_resource("a/b/c").await.unwrap();
    assert!(!kbs.server.state.resources.root().join("a/b/c").exists());
    let e = admin.delete_resource("a/b/c").await.unwrap_err();
    assert_eq!(
        e.kbs_error_type(),
        Some(&KbsErrorType::ResourceNotFound),
        "{e}"
    );
    assert_eq!(e.status(), Some(404));
    let e = c.get_resource(&uri("a/b/c")).await.unwrap_err();
    assert_eq!(e.kbs_error_type(), Some(&KbsErrorType::ResourceNotFound));
}

#[tokio::test]
async fn client_reattests_when_the_token_nears_expiry() {
    // Token lifetime 7 s, client margin 5 s: fresh for ~2 s, then re-attested.
    let kbs = start(true, |c| c.token_lifetime_secs = 7).await;
    kbs.put_resource("a/b/c", b"v");
    let mut c = kbs.client();
    c.get_resource(&uri("a/b/c")).await.unwrap();
    c.get_resource(&uri("a/b/c")).await.unwrap();
    assert_eq!(c.handshakes(), 1, "cached token reused");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        c.get_resource(&uri("a/b/c")).await.unwrap().as_slice(),
        b"v"
    );
    assert_eq!(c.handshakes(), 2, "re-attested before the token expired");
    assert_eq!(kbs.server.state.stats.attest_ok.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn client_reattests_after_401_when_the_server_forgot_the_session() {
    // Tokens signed by a restarted server's new ephemeral key do not verify: the
    // client's cached session is answered 401 and it re-attests once.
    let kbs = start(true, |_| {}).await;
    kbs.put_resource("a/b/c", b"v1");
    let mut c = kbs.client();
    c.get_resource(&uri("a/b/c")).await.unwrap();
    let addr = kbs.server.addr;
    let dir = kbs.dir;
    kbs.server.stop().await;
    let mut config = cocoon_kbs::KbsConfig::for_loopback(dir.path().join("resources"));
    config.listen = addr;
    config.allow_sample = true;
    let p = dir.path().join("policy.rego");
    config.resource_policy_file = Some(p);
    let server2 = cocoon_kbs::KbsServer::start(config).await.unwrap();
    std::fs::write(server2.state.resources.root().join("a/b/c"), b"v2").unwrap();
    assert_eq!(
        c.get_resource(&uri("a/b/c")).await.unwrap().as_slice(),
        b"v2"
    );
    assert_eq!(c.handshakes(), 2);
}

/// An attestation policy that grades any verified evidence (sample included) affirming.
const AFFIRM_ALL: &str = "package policy\n\ntrust_claims := {\"hardware\": 2, \"executables\": 2, \"configuration\": 2}\n";

/// An attestation policy that refuses sample evidence (unrecognized hardware, 97) and
/// grades anything else affirming.
const REJECT_SAMPLE: &str = r#"package policy

default hardware := 2

hardware := 97 if input.sample

trust_claims := {"hardware": hardware, "executables": 2}
"#;

/// A resource policy releasing only to affirming tokens (kbs-client's `--affirming`).
const AFFIRMING_ONLY: &str = "package policy\n\ndefault allow := false\n\nallow if input.submods.cpu0[\"ear.status\"] == \"affirming\"\n";

fn cpu0(token: &str) -> serde_json::Value {
    kbs_client::jws::decode_claims_unverified(token).unwrap()["submods"]["cpu0"].clone()
}

fn admin(kbs: &TestKbs) -> kbs_client::KbsAdminClient {
    kbs_client::KbsAdminClient::new(&kbs.url(), Some(kbs.admin_token()), &[]).unwrap()
}

#[tokio::test]
async fn attestation_policy_decides_attest_and_release() {
    let kbs = start(true, |_| {}).await;
    kbs.put_resource("default/key/k1", b"policy-gated");
    let stats = &kbs.server.state.stats;
    // Built-in attestation policy: sample evidence is `warning`, released under coco-dev.
    let mut c = kbs.client();
    let token = c.attest().await.unwrap();
    let sub = cpu0(&token);
    assert_eq!(sub["ear.status"], "warning", "{sub}");
    assert_eq!(sub["ear.appraisal-policy-id"], "default");
    assert_eq!(sub["ear.trustworthiness-vector"]["executables"], 33);
    assert_eq!(sub["ear.trustworthiness-vector"]["hardware"], 0);
    assert!(sub["ear.veraison.annotated-evidence"]["sample"].is_object());
    c.get_resource(&uri("default/key/k1")).await.unwrap();

    // A policy that makes sample evidence contraindicated: /attest is refused, so no
    // token exists for any resource policy to release on.
    admin(&kbs)
        .set_attestation_policy(REJECT_SAMPLE.as_bytes(), "rego", "default")
        .await
        .unwrap();
    let mut refused = kbs.client();
    let e = refused
        .get_resource(&uri("default/key/k1"))
        .await
        .unwrap_err();
    assert_eq!(
        e.kbs_error_type(),
        Some(&KbsErrorType::AttestationError),
        "{e}"
    );
    assert_eq!(e.status(), Some(401));
    assert!(e.to_string().contains("contraindicated"), "{e}");
    assert!(e.to_string().contains("attestation policy default"), "{e}");
    assert_eq!(stats.attest_policy_refused.load(Ordering::Relaxed), 1);
    assert_eq!(stats.released.load(Ordering::Relaxed), 1);

    // A policy that accepts, posted under trustee's kbs-client default id `default_cpu`
    // (the same policy as `default`): released, and the token says affirming.
    admin(&kbs)
        .set_attestation_policy(AFFIRM_ALL.as_bytes(), "rego", "default_cpu")
        .await
        .unwrap();
    let mut accepted = kbs.client();
    assert_eq!(
        accepted
            .get_resource(&uri("default/key/k1"))
            .await
            .unwrap()
            .as_slice(),
        b"policy-gated"
    );
    let sub = cpu0(&accepted.session().unwrap().token);
    assert_eq!(sub["ear.status"], "affirming", "{sub}");
    assert_eq!(sub["ear.trustworthiness-vector"]["hardware"], 2);
    assert_eq!(stats.released.load(Ordering::Relaxed), 2);
    assert_eq!(stats.attest_policy_refused.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn attestation_policy_status_reaches_the_resource_policy() {
    let kbs = start(true, |_| {}).await;
    kbs.put_resource("default/key/k1", b"affirmed only");
    admin(&kbs)
        .set_resource_policy(AFFIRMING_ONLY.as_bytes())
        .await
        .unwrap();
    // Built-in attestation policy: attested (warning) but refused by the resource policy.
    let mut c = kbs.client();
    let e = c.get_resource(&uri("default/key/k1")).await.unwrap_err();
    assert_eq!(e.kbs_error_type(), Some(&KbsErrorType::PolicyDeny), "{e}");
    // An attestation policy that affirms: the next attestation's token is released.
    admin(&kbs)
        .set_attestation_policy(AFFIRM_ALL.as_bytes(), "rego", "default")
        .await
        .unwrap();
    let mut c = kbs.client();
    assert_eq!(
        c.get_resource(&uri("default/key/k1"))
            .await
            .unwrap()
            .as_slice(),
        b"affirmed only"
    );
}

#[tokio::test]
async fn invalid_attestation_policy_is_400_and_nothing_is_stored() {
    let kbs = start(true, |_| {}).await;
    kbs.put_resource("default/key/k1", b"v");
    let admin = admin(&kbs);
    let e = admin
        .set_attestation_policy(b"package policy\ntrust_claims := {", "rego", "default")
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400), "{e}");
    assert_eq!(
        e.kbs_error_type(),
        Some(&KbsErrorType::ParsePolicyError),
        "{e}"
    );
    assert!(e.to_string().contains("cannot load"), "{e}");
    assert!(kbs.server.state.attestation_policy("default").is_none());
    // The built-in policy still appraises.
    kbs.client()
        .get_resource(&uri("default/key/k1"))
        .await
        .unwrap();

    // With a policy in force, invalid posts leave it in force.
    admin
        .set_attestation_policy(AFFIRM_ALL.as_bytes(), "rego", "default")
        .await
        .unwrap();
    for (policy, policy_type, id, expect) in [
        (
            &b"package policy\ntrust_claims := {"[..],
            "rego",
            "default",
            "cannot load",
        ),
        (
            &b"package policy\ntrust_claims := {"[..],
            "rego",
            "default_cpu",
            "cannot load",
        ),
        (
            &b"package other\ntrust_claims := {}\n"[..],
            "rego",
            "default",
            "package policy",
        ),
        (&b"\xff\xfe"[..], "rego", "default", "UTF-8"),
        (AFFIRM_ALL.as_bytes(), "opa", "default", "expected rego"),
        (AFFIRM_ALL.as_bytes(), "rego", "a.b/c", "not a plain name"),
    ] {
        let e = admin
            .set_attestation_policy(policy, policy_type, id)
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400), "{id}: {e}");
        assert!(e.to_string().contains(expect), "{id}: {e}");
    }
    assert_eq!(
        kbs.server.state.attestation_policy("default").as_deref(),
        Some(AFFIRM_ALL)
    );
    let mut c = kbs.client();
    c.get_resource(&uri("default/key/k1")).await.unwrap();
    assert_eq!(cpu0(&c.session().unwrap().token)["ear.status"], "affirming");
    // Not base64url / not JSON, sent raw.
    let (status, body) = raw_http(
        kbs.server.addr,
        &format!(
            "POST /kbs/v0/attestation-policy HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 30\r\nConnection: close\r\n\r\n\
             {{\"policy\":\"!!!\",\"type\":\"rego\"}}",
            kbs.admin_token()
        ),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("ParsePolicyError") && body.contains("base64url"),
        "{body}"
    );
}

/// Sample evidence has no hardware field for init-data: the token still reports the
/// digest of the init-data the guest sent (hex SHA-384 for `algorithm = "sha384"`), as
/// trustee's sample verifier does, with the parsed table as `init_data_claims`.
#[tokio::test]
async fn sample_evidence_token_reports_the_init_data_digest() {
    use sha2::Digest as _;
    let kbs = start(true, |_| {}).await;
    let initdata = "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"policy.rego\" = \"package agent_policy\"\n";
    let mut c = kbs_client::KbsClientBuilder::new(&kbs.url())
        .tee(attestation::Tee::Sample)
        .init_data(initdata.to_string())
        .build()
        .unwrap();
    let evidence = &cpu0(&c.attest().await.unwrap())["ear.veraison.annotated-evidence"];
    assert_eq!(
        evidence["init_data"],
        hex::encode(sha2::Sha384::digest(initdata.as_bytes())),
        "{evidence}"
    );
    assert_eq!(
        evidence["init_data_claims"]["policy.rego"], "package agent_policy",
        "{evidence}"
    );
    // Without init-data the claim is null.
    let mut plain = kbs.client();
    let evidence = &cpu0(&plain.attest().await.unwrap())["ear.veraison.annotated-evidence"];
    assert!(evidence["init_data"].is_null(), "{evidence}");
}

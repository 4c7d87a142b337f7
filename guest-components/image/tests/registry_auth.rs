//! Registry authentication against Debian's docker-registry on 127.0.0.1: HTTP basic
//! (bcrypt htpasswd) and bearer tokens (the registry's `token` auth with our token server),
//! credentials from an auth.json through `AuthFileCredentials`; the CLI's `--authfile`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod common;

use std::path::Path;
use std::sync::Arc;

use auth::{PASSWORD, TokenServer, USER, htpasswd_auth, write_authfile};
use common::*;
use guest_image::{AuthFileCredentials, ImageError, PullOptions, pull_image};

fn creds_opts(registry: &Registry, authfile: Option<&Path>) -> PullOptions {
    PullOptions {
        insecure_registries: vec![registry.host.clone()],
        credentials: authfile.map(|p| {
            Arc::new(AuthFileCredentials::from_file(p).unwrap())
                as Arc<dyn guest_image::CredentialSource>
        }),
        ..PullOptions::default()
    }
}

/// The error is `Unauthorized`, names the registry and says whether credentials were sent.
fn assert_unauthorized(err: &ImageError, registry: &str, sent: bool, needle: &str) {
    let text = err.to_string();
    match err {
        ImageError::Unauthorized {
            registry: r,
            sent_credentials,
            ..
        } => {
            assert_eq!(r, registry, "{text}");
            assert_eq!(*sent_credentials, sent, "{text}");
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert!(text.contains(registry), "{text}");
    assert!(text.contains("unauthorized"), "{text}");
    assert!(text.contains(needle), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}

fn push_with_creds(registry: &Registry, layout: &Path, repo: &str) -> String {
    let creds = format!("{USER}:{PASSWORD}");
    registry.push(layout, "busybox", repo, &["--dest-creds", &creds])
}

/// With the right credentials in an auth file, `image` pulls and unpacks to the same tree as
/// `umoci unpack` of the local layout it was pushed from.
async fn pull_with_good_credentials_matches_umoci(
    registry: &Registry,
    image: &str,
    layout: &Path,
    work: &Path,
) {
    let good = write_authfile(work, "good.json", &registry.host, USER, PASSWORD);
    let dest = work.join("good/rootfs");
    let pulled = pull_image(image, &dest, &creds_opts(registry, Some(&good)))
        .await
        .unwrap();
    assert_eq!(pulled.summary.layers, 5);
    let expected = umoci_unpack(layout, "busybox", &work.join("bundle"));
    assert_eq!(describe_tree(&dest), describe_tree(&expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_pull_needs_the_right_credentials() {
    let work = tempfile::tempdir().unwrap();
    let layout = build_busybox_image(work.path());
    let registry = Registry::start_with_auth(&htpasswd_auth(work.path()));
    // An anonymous push is refused: the registry really enforces basic auth.
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:busybox", layout.display()))
        .arg(format!("docker://{}/test/anon:latest", registry.host))
        .output()
        .unwrap();
    assert!(!out.status.success(), "anonymous push was accepted");
    let repo = push_with_creds(&registry, &layout, "test/private:latest");
    let image = format!("{repo}:latest");

    pull_with_good_credentials_matches_umoci(&registry, &image, &layout, work.path()).await;

    // No credentials at all, and an auth file without an entry for this registry.
    let other = write_authfile(
        work.path(),
        "other.json",
        "other.example:5000",
        USER,
        PASSWORD,
    );
    for authfile in [None, Some(other.as_path())] {
        let dest = work.path().join("anon/rootfs");
        let err = pull_image(&image, &dest, &creds_opts(&registry, authfile))
            .await
            .unwrap_err();
        assert_unauthorized(&err, &registry.host, false, "401 Unauthorized");
        assert!(err.to_string().contains("no credentials"), "{err}");
        assert!(!dest.exists());
    }

    let wrong = write_authfile(work.path(), "wrong.json", &registry.host, USER, "not-it");
    let dest = work.path().join("wrong/rootfs");
    let err = pull_image(&image, &dest, &creds_opts(&registry, Some(&wrong)))
        .await
        .unwrap_err();
    assert_unauthorized(&err, &registry.host, true, "401 Unauthorized");
    assert!(
        err.to_string()
            .contains("credentials given for it were refused"),
        "{err}"
    );
    assert!(!dest.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_pull_needs_credentials() {
    let work = tempfile::tempdir().unwrap();
    let layout = build_busybox_image(work.path());
    let tokens = TokenServer::start(work.path());
    let registry = Registry::start_with_auth(&tokens.registry_auth());
    let repo = push_with_creds(&registry, &layout, "test/tokened:latest");
    let image = format!("{repo}:latest");
    tokens.issued.lock().unwrap().clear();

    pull_with_good_credentials_matches_umoci(&registry, &image, &layout, work.path()).await;
    // The pull went through the token flow for exactly this repository.
    assert_eq!(
        *tokens.issued.lock().unwrap(),
        ["repository:test/tokened:pull"]
    );

    let refused_before = tokens.refused.load(std::sync::atomic::Ordering::SeqCst);
    let dest = work.path().join("anon/rootfs");
    let err = pull_image(&image, &dest, &creds_opts(&registry, None))
        .await
        .unwrap_err();
    assert_unauthorized(&err, &registry.host, false, "token server refused");
    assert!(!dest.exists());

    let wrong = write_authfile(work.path(), "wrong.json", &registry.host, USER, "not-it");
    let err = pull_image(&image, &dest, &creds_opts(&registry, Some(&wrong)))
        .await
        .unwrap_err();
    assert_unauthorized(&err, &registry.host, true, "token server refused");
    assert!(!dest.exists());
    assert_eq!(
        tokens.refused.load(std::sync::atomic::Ordering::SeqCst),
        refused_before + 2
    );
}

/// `cocoon image pull --authfile FILE` (the `cli` feature, on in workspace builds).
#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_pull_uses_the_authfile() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        pull: guest_image::cli::PullArgs,
    }

    let work = tempfile::tempdir().unwrap();
    let layout = build_busybox_image(work.path());
    let registry = Registry::start_with_auth(&htpasswd_auth(work.path()));
    let repo = push_with_creds(&registry, &layout, "test/cli:latest");
    let image = format!("{repo}:latest");
    let good = write_authfile(work.path(), "good.json", &registry.host, USER, PASSWORD);
    let args = |dest: &Path, authfile: Option<&Path>| {
        let mut argv = vec![
            "pull".to_owned(),
            image.clone(),
            "--dest".into(),
            dest.display().to_string(),
            "--insecure-registry".into(),
            registry.host.clone(),
        ];
        if let Some(f) = authfile {
            argv.extend(["--authfile".into(), f.display().to_string()]);
        }
        Cmd::parse_from(argv).pull
    };

    let dest = work.path().join("cli/rootfs");
    guest_image::cli::run_pull(&args(&dest, Some(&good)))
        .await
        .unwrap();
    assert!(dest.join("bin/busybox").is_file());

    let anon = work.path().join("cli-anon/rootfs");
    let err = guest_image::cli::run_pull(&args(&anon, None))
        .await
        .unwrap_err();
    assert_unauthorized(&err, &registry.host, false, "401 Unauthorized");

    let missing = work.path().join("missing.json");
    let err = guest_image::cli::run_pull(&args(&anon, Some(&missing)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImageError::AuthFile(_)) && err.to_string().contains("missing.json"),
        "{err}"
    );
}

//! The hybrid-vsock `CONNECT` handshake against a fake backend socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use runtime_qemu::vsock::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn classifies_replies() {
    assert_eq!(classify_reply(b"OK 1024", false), HandshakeReply::Connected);
    assert_eq!(classify_reply(b"ok 5", false), HandshakeReply::Connected);
    assert_eq!(classify_reply(b"", true), HandshakeReply::NotListening);
    assert_eq!(
        classify_reply(b"NO", false),
        HandshakeReply::Refused("NO".into())
    );
    assert_eq!(connect_line(1024), "CONNECT 1024\n");
}

/// First two connections are closed without a reply (guest not listening yet), the third
/// answers OK and then echoes; bytes after the OK line must not be swallowed.
#[tokio::test]
async fn retries_until_listening_then_streams() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("vm.vsock");
    let listener = tokio::net::UnixListener::bind(&uds).unwrap();
    tokio::spawn(async move {
        for attempt in 0.. {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 13];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"CONNECT 1024\n");
            if attempt < 2 {
                continue; // drop: EOF before OK
            }
            s.write_all(b"OK 1024\nhello").await.unwrap();
            let mut b = [0u8; 4];
            s.read_exact(&mut b).await.unwrap();
            s.write_all(&b).await.unwrap();
            return;
        }
    });
    let mut s = connect_with_retry(&uds, 1024, Duration::from_secs(5), || None)
        .await
        .unwrap();
    let mut hello = [0u8; 5];
    s.read_exact(&mut hello).await.unwrap();
    assert_eq!(&hello, b"hello");
    s.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 4];
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"ping");
}

#[tokio::test]
async fn abort_stops_retrying_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut calls = 0;
    let err = connect_with_retry(
        &dir.path().join("missing.sock"),
        1024,
        Duration::from_secs(30),
        || {
            calls += 1;
            (calls > 3).then(|| "qemu exited".to_string())
        },
    )
    .await
    .err()
    .unwrap();
    assert!(err.to_string().contains("qemu exited"), "{err}");
}

#[tokio::test]
async fn refusal_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("vm.vsock");
    let listener = tokio::net::UnixListener::bind(&uds).unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 13];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(b"ERR no such port\n").await.unwrap();
    });
    let err = connect_with_retry(&uds, 1024, Duration::from_secs(5), || None)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, VsockError::Refused { .. }), "{err}");
}

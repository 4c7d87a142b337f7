//! QMP codec on a transcript recorded from QEMU 7.2 (`-qmp unix:...`), and the client
//! against a scripted fake QEMU socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use runtime_qemu::qmp::*;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}"#;

#[test]
fn parses_recorded_messages() {
    assert_eq!(
        parse_message(GREETING).unwrap(),
        QmpMessage::Greeting {
            version: (7, 2, 22),
            capabilities: vec!["oob".into()]
        }
    );
    assert_eq!(
        parse_message(
            r#"{"return": {"status": "running", "singlestep": false, "running": true}, "id": 2}"#
        )
        .unwrap(),
        QmpMessage::Return {
            id: Some(json!(2)),
            value: json!({"status": "running", "singlestep": false, "running": true})
        }
    );
    assert_eq!(
        parse_message(r#"{"id": 3, "error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}"#).unwrap(),
        QmpMessage::Error { id: Some(json!(3)), class: "CommandNotFound".into(), desc: "The command nope has not been found".into() }
    );
    assert_eq!(
        parse_message(r#"{"timestamp": {"seconds": 1763780000, "microseconds": 1}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}"#).unwrap(),
        QmpMessage::Event { name: "SHUTDOWN".into(), data: json!({"guest": true, "reason": "guest-shutdown"}) }
    );
    assert!(matches!(
        parse_message("not json"),
        Err(QmpError::Malformed(_))
    ));
    assert!(matches!(
        parse_message("[1,2]"),
        Err(QmpError::Malformed(_))
    ));
    assert!(matches!(
        parse_message(r#"{"foo": 1}"#),
        Err(QmpError::Malformed(_))
    ));
}

#[test]
fn encodes_commands() {
    assert_eq!(
        encode_command("query-status", None, 4),
        "{\"execute\":\"query-status\",\"id\":4}\n"
    );
    let line = encode_command("device_del", Some(json!({"id": "x"})), 5);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["arguments"]["id"], "x");
}

/// A fake QEMU: replies from a script, with an event interleaved before a reply.
#[tokio::test]
async fn client_negotiates_and_skips_events() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("qmp.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let (r, mut w) = s.into_split();
        let mut lines = BufReader::new(r).lines();
        w.write_all(format!("{GREETING}\r\n").as_bytes())
            .await
            .unwrap();
        let mut seen = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let id = v["id"].clone();
            let cmd = v["execute"].as_str().unwrap().to_string();
            seen.push(cmd.clone());
            let reply = match cmd.as_str() {
                "qmp_capabilities" => json!({"return": {}, "id": id}),
                "query-status" => {
                    w.write_all(b"{\"event\": \"RESUME\", \"data\": {}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n").await.unwrap();
                    json!({"return": {"status": "running", "running": true}, "id": id})
                }
                "quit" => {
                    return seen;
                }
                _ => json!({"error": {"class": "CommandNotFound", "desc": "no"}, "id": id}),
            };
            w.write_all(format!("{reply}\r\n").as_bytes())
                .await
                .unwrap();
        }
        seen
    });
    let mut c = QmpClient::connect(&sock, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(c.version, (7, 2, 22));
    let st = c.query_status().await.unwrap();
    assert_eq!(
        st,
        VmStatus {
            status: "running".into(),
            running: true
        }
    );
    assert_eq!(c.take_events().len(), 1);
    let err = c.execute("nope", None).await.unwrap_err();
    assert!(err.to_string().contains("CommandNotFound"));
    c.quit().await.unwrap(); // socket closes without a reply: still Ok
    let seen = server.await.unwrap();
    assert_eq!(seen, ["qmp_capabilities", "query-status", "nope", "quit"]);
}

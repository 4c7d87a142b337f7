//! Raw, malformed ttRPC frames sent to the server socket: the server must refuse them without
//! crashing or allocating what the header claims, and keep serving.
//!
//! Frames are built by hand from the ttRPC wire format (10-byte header: payload length u32 BE,
//! stream id u32 BE, type u8, flags u8; payload = ttrpc.Request {service=1, method=2,
//! payload=3}), independently of the ttrpc crate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use agent_protocol::types::*;
use agent_protocol::{
    AgentClient, AgentDispatcher, AgentError, AgentRequest, AgentResponse, async_trait, serve,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

struct Healthy;

#[async_trait]
impl AgentDispatcher for Healthy {
    async fn dispatch(&self, req: AgentRequest) -> Result<AgentResponse, AgentError> {
        match req {
            AgentRequest::Check(_) => Ok(AgentResponse::HealthCheck(HealthCheckResponse {
                status: ServingStatus::Serving,
            })),
            other => Err(AgentError::unimplemented(other.rpc_name())),
        }
    }
}

const TYPE_REQUEST: u8 = 1;
const TYPE_RESPONSE: u8 = 2;

fn header(length: u32, stream_id: u32, kind: u8) -> Vec<u8> {
    let mut out = length.to_be_bytes().to_vec();
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(&[kind, 0]);
    out
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn length_delimited(field: u64, bytes: &[u8], out: &mut Vec<u8>) {
    varint((field << 3) | 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn request_frame(stream_id: u32, service: &str, method: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    length_delimited(1, service.as_bytes(), &mut body);
    length_delimited(2, method.as_bytes(), &mut body);
    length_delimited(3, payload, &mut body);
    let mut frame = header(body.len() as u32, stream_id, TYPE_REQUEST);
    frame.extend_from_slice(&body);
    frame
}

/// Reads one frame; returns (stream id, type, status code, response payload).
async fn read_response(stream: &mut UnixStream) -> (u32, u8, u64, Vec<u8>) {
    let mut head = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut head))
        .await
        .expect("response within 10 s")
        .expect("read header");
    let length = u32::from_be_bytes(head[0..4].try_into().unwrap()) as usize;
    let stream_id = u32::from_be_bytes(head[4..8].try_into().unwrap());
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.expect("read body");
    // ttrpc.Response { status = 1 { code = 1, message = 2 }, payload = 2 }
    let (mut code, mut payload) = (0, Vec::new());
    let mut pos = 0;
    while pos < body.len() {
        let key = body[pos];
        pos += 1;
        let len = body[pos] as usize; // short test messages: one-byte lengths
        pos += 1;
        let value = &body[pos..pos + len];
        pos += len;
        match key {
            0x0a if value.first() == Some(&0x08) => code = u64::from(value[1]),
            0x12 => payload = value.to_vec(),
            _ => {}
        }
    }
    (stream_id, head[8], code, payload)
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_do_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let address = format!("unix://{}", path.display());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let address = address.clone();
        async move {
            serve(&address, Arc::new(Healthy), async {
                let _ = stopped.await;
            })
            .await
        }
    });
    for _ in 0..200 {
        if path.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rss_before = vm_rss_kib();

    let check_on_new_connection = || async {
        let client = AgentClient::connect(&address).await.unwrap();
        let health = client.check(CheckRequest::default()).await.unwrap();
        assert_eq!(health.status, ServingStatus::Serving);
    };
    check_on_new_connection().await;

    // 1. Garbage bytes (an HTTP request line), then hang up.
    let mut raw = UnixStream::connect(&path).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: agent\r\n\r\n\x00\xff\xfe")
        .await
        .unwrap();
    drop(raw);
    check_on_new_connection().await;

    // 2. A truncated frame: header claims 100 bytes, 10 arrive, then hang up.
    let mut raw = UnixStream::connect(&path).await.unwrap();
    let mut frame = header(100, 1, TYPE_REQUEST);
    frame.extend_from_slice(&[0x0a; 10]);
    raw.write_all(&frame).await.unwrap();
    drop(raw);
    check_on_new_connection().await;

    // 3. A header claiming 4 GiB: must not be allocated; hang up after a few bytes.
    let mut raw = UnixStream::connect(&path).await.unwrap();
    let mut frame = header(u32::MAX, 1, TYPE_REQUEST);
    frame.extend_from_slice(&[0u8; 4096]);
    raw.write_all(&frame).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(raw);
    check_on_new_connection().await;

    // 4. A complete 5 MiB frame (over the 4 MiB limit): refused with INVALID_ARGUMENT (3) on
    //    its stream, and the same connection then answers a well-formed Check.
    let mut raw = UnixStream::connect(&path).await.unwrap();
    let big = 5 << 20;
    let mut frame = header(big, 1, TYPE_REQUEST);
    frame.resize(10 + big as usize, 0);
    let (mut reader, mut writer) = raw.split();
    let (write, response) = tokio::join!(writer.write_all(&frame), async {
        let mut head = [0u8; 10];
        reader.read_exact(&mut head).await.map(|_| head)
    });
    write.unwrap();
    let head = response.unwrap();
    assert_eq!(&head[4..9], &[0, 0, 0, 1, TYPE_RESPONSE]);
    let length = u32::from_be_bytes(head[0..4].try_into().unwrap()) as usize;
    let mut body = vec![0; length];
    raw.read_exact(&mut body).await.unwrap();
    assert_eq!(
        &body[..4],
        &[0x0a, body[1], 0x08, 3],
        "status code INVALID_ARGUMENT"
    );
    raw.write_all(&request_frame(3, "grpc.Health", "Check", &[]))
        .await
        .unwrap();
    let (stream_id, kind, code, payload) = read_response(&mut raw).await;
    assert_eq!((stream_id, kind, code), (3, TYPE_RESPONSE, 0));
    assert_eq!(
        payload,
        [0x08, 0x01],
        "HealthCheckResponse{{status: SERVING}}"
    );

    // 5. A request whose payload is not a valid message, and one for an unknown method: each
    //    gets a non-OK status, and the connection keeps working.
    raw.write_all(&request_frame(
        5,
        "grpc.AgentService",
        "CreateContainer",
        &[0x0f, 0xff],
    ))
    .await
    .unwrap();
    let (stream_id, _, code, _) = read_response(&mut raw).await;
    assert_eq!(stream_id, 5);
    assert_ne!(code, 0, "garbage payload must not succeed");
    raw.write_all(&request_frame(7, "grpc.AgentService", "PullImage", &[]))
        .await
        .unwrap();
    let (stream_id, _, code, _) = read_response(&mut raw).await;
    assert_eq!(stream_id, 7);
    assert_ne!(code, 0, "unknown method must not succeed");
    raw.write_all(&request_frame(9, "grpc.Health", "Check", &[]))
        .await
        .unwrap();
    let (stream_id, _, code, payload) = read_response(&mut raw).await;
    assert_eq!((stream_id, code), (9, 0));
    assert_eq!(payload, [0x08, 0x01]);
    drop(raw);

    check_on_new_connection().await;
    let rss_after = vm_rss_kib();
    assert!(
        rss_after < rss_before + 256 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

//! A loopback HTTP/1.1 proxy for the tests, in front of docker-registry, that injects
//! faults: canned answers (429 with an OCI error body, 503, 403, ...), redirects, bodies cut
//! off by a connection reset, a flipped byte, a dropped `Range` header, answers held back
//! for a while. It records every request it receives (method, target, headers), and how
//! many held-back requests were waiting at the same time.
//!
//! One request per connection: the proxy answers with `Connection: close`, asks the
//! upstream for the same and relays its whole answer, so no HTTP framing has to be parsed.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod image;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does with a request that matches a [`Rule`].
#[derive(Clone, Debug)]
pub enum Action {
    /// Answer with `status` and `body` instead of forwarding; `headers` are added.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// `307 Temporary Redirect` to `base` followed by the request target.
    Redirect { base: String },
    /// Forward, relay the first `after` body bytes, wait a moment, then reset the connection.
    CutBody { after: usize },
    /// Forward, flipping one bit in the middle of the body.
    FlipByte,
    /// Forward without the request's `Range` header.
    DropRange,
    /// Forward, but hold the answer back for this long before relaying it. Such a request
    /// counts as in flight (see [`FaultProxy::max_delayed_in_flight`]) from the moment its
    /// head was read until the hold ends, i.e. before the client can have received a byte
    /// of the answer: a client that waits for one answer before sending the next request
    /// is never seen with two in flight.
    Delay(Duration),
}

impl Action {
    /// `status` with an OCI error body `{"errors":[{"code": code, ...}]}`.
    pub fn oci_error(status: u16, code: &str) -> Self {
        let body = serde_json::json!({"errors": [{
            "code": code, "message": format!("injected {code}"), "detail": null
        }]});
        Self::Respond {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    /// `status` with a plain-text body.
    pub fn plain(status: u16, body: &str) -> Self {
        Self::Respond {
            status,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: body.as_bytes().to_vec(),
        }
    }
}

/// Requests with `method` whose target contains `target` get `action`, `times` times
/// (`None`: always). The first applicable rule wins.
#[derive(Clone, Debug)]
struct Rule {
    method: String,
    target: String,
    times: Option<usize>,
    action: Action,
}

/// One request the proxy received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The injected action, if any.
    pub action: Option<Action>,
    /// When the request head had been read.
    pub at: Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Requests with an [`Action::Delay`] in flight: now, and the most at any one time.
#[derive(Default)]
struct Gauge {
    now: usize,
    max: usize,
}

#[derive(Default)]
struct State {
    rules: Mutex<Vec<Rule>>,
    seen: Mutex<Vec<Seen>>,
    delayed: Mutex<Gauge>,
}

/// The proxy; stops when dropped.
pub struct FaultProxy {
    /// `127.0.0.1:<port>`.
    pub host: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy on a free loopback port forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let state = Arc::new(State::default());
        let upstream = upstream.to_owned();
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                while let Ok((conn, _)) = listener.accept().await {
                    tokio::spawn(handle(conn, upstream.clone(), state.clone()));
                }
            }
        });
        Self { host, state, task }
    }

    /// Add a rule (see [`Rule`]).
    pub fn rule(&self, method: &str, target: &str, times: Option<usize>, action: Action) {
        self.state.rules.lock().unwrap().push(Rule {
            method: method.into(),
            target: target.into(),
            times,
            action,
        });
    }

    /// Remove all rules and forget the requests seen (and the in-flight maximum).
    pub fn reset(&self) {
        self.state.rules.lock().unwrap().clear();
        self.state.seen.lock().unwrap().clear();
        self.state.delayed.lock().unwrap().max = 0;
    }

    /// The most requests held back by an [`Action::Delay`] at the same time so far.
    pub fn max_delayed_in_flight(&self) -> usize {
        self.state.delayed.lock().unwrap().max
    }

    /// Requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Requests with `method` whose target contains `target`.
    pub fn matching(&self, method: &str, target: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == method && s.target.contains(target))
            .collect()
    }

    /// How many of them.
    pub fn count(&self, method: &str, target: &str) -> usize {
        self.matching(method, target).len()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Read up to the end of the request head (GET/HEAD requests have no body).
async fn read_head(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 << 10 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf)
}

/// Header names and values.
type Headers = Vec<(String, String)>;

/// Method, target and headers (names lower-cased) of a request head.
fn parse_head(head: &[u8]) -> Option<(String, String, Headers)> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut request = lines.next()?.split(' ');
    let method = request.next()?.to_owned();
    let target = request.next()?.to_owned();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some((method, target, headers))
}

fn pick_action(state: &State, method: &str, target: &str) -> Option<Action> {
    let mut rules = state.rules.lock().unwrap();
    let rule = rules.iter_mut().find(|r| {
        r.method == method && target.contains(&r.target) && r.times.is_none_or(|t| t > 0)
    })?;
    if let Some(t) = &mut rule.times {
        *t -= 1;
    }
    Some(rule.action.clone())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Whatever",
    }
}

async fn respond(conn: &mut TcpStream, status: u16, headers: &[(String, String)], body: &[u8]) {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let _ = conn.write_all(out.as_bytes()).await;
    let _ = conn.write_all(body).await;
    let _ = conn.shutdown().await;
}

/// One request counted in [`State::delayed`] while this lives.
struct Held<'a>(&'a State);

impl<'a> Held<'a> {
    fn new(state: &'a State) -> Self {
        let mut g = state.delayed.lock().unwrap();
        g.now += 1;
        g.max = g.max.max(g.now);
        Self(state)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.delayed.lock().unwrap().now -= 1;
    }
}

async fn handle(mut conn: TcpStream, upstream: String, state: Arc<State>) {
    let Some(head) = read_head(&mut conn).await else {
        return;
    };
    let Some((method, target, headers)) = parse_head(&head) else {
        return;
    };
    let action = pick_action(&state, &method, &target);
    state.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        target: target.clone(),
        headers: headers.clone(),
        action: action.clone(),
        at: Instant::now(),
    });
    match &action {
        Some(Action::Respond {
            status,
            headers,
            body,
        }) => return respond(&mut conn, *status, headers, body).await,
        Some(Action::Redirect { base }) => {
            let location = vec![("Location".to_owned(), format!("{base}{target}"))];
            return respond(&mut conn, 307, &location, b"").await;
        }
        _ => {}
    }
    // Counted until the hold ends, or until this handler gives up early.
    let held = matches!(action, Some(Action::Delay(_))).then(|| Held::new(&state));

    // Forward.
    let mut request = format!("{method} {target} HTTP/1.1\r\nHost: {upstream}\r\n");
    for (n, v) in &headers {
        let dropped = matches!(n.as_str(), "host" | "connection" | "keep-alive")
            || (n == "range" && matches!(action, Some(Action::DropRange)));
        if !dropped {
            request.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    request.push_str("Connection: close\r\n\r\n");
    let Ok(mut up) = TcpStream::connect(&upstream).await else {
        return respond(&mut conn, 502, &[], b"upstream down").await;
    };
    up.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).await.unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(answer.len(), |p| p + 4);
    let (answer_head, body) = answer.split_at(split);
    let mut body = body.to_vec();
    if let Some(Action::Delay(hold)) = &action {
        tokio::time::sleep(*hold).await;
    }
    drop(held);
    match action {
        Some(Action::CutBody { after }) => {
            let _ = conn.write_all(answer_head).await;
            let _ = conn.write_all(&body[..after.min(body.len())]).await;
            let _ = conn.flush().await;
            // Let the client read what was sent before the reset discards it.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = conn.set_zero_linger();
            drop(conn);
        }
        Some(Action::FlipByte) => {
            let mid = body.len() / 2;
            if let Some(b) = body.get_mut(mid) {
                *b ^= 0x01;
            }
            let _ = conn.write_all(answer_head).await;
            let _ = conn.write_all(&body).await;
            let _ = conn.shutdown().await;
        }
        _ => {
            let _ = conn.write_all(answer_head).await;
            let _ = conn.write_all(&body).await;
            let _ = conn.shutdown().await;
        }
    }
}

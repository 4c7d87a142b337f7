//! Registry authentication for the tests: a bcrypt htpasswd file (docker-registry's `htpasswd`
//! auth) and a small token server on 127.0.0.1 for its `token` auth, which checks basic
//! credentials and issues ES256 JWTs carrying the signing certificate in `x5c`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;

use crate::common::{openssl_keypair, run};

pub const USER: &str = "cocoon";
pub const PASSWORD: &str = "s3cret-pw";

/// Writes `user:bcrypt(password)` to `dir/htpasswd`; returns the registry `auth:` section.
pub fn htpasswd_auth(dir: &Path) -> String {
    let path = dir.join("htpasswd");
    let hash = bcrypt::hash(PASSWORD, 5).unwrap();
    fs::write(&path, format!("{USER}:{hash}\n")).unwrap();
    format!(
        "auth: {{htpasswd: {{realm: cocoon-test, path: {}}}}}\n",
        path.display()
    )
}

/// An auth.json with `user:password` for `registry`.
pub fn write_authfile(
    dir: &Path,
    name: &str,
    registry: &str,
    user: &str,
    password: &str,
) -> PathBuf {
    let path = dir.join(name);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    fs::write(
        &path,
        format!(r#"{{"auths": {{"http://{registry}/v1/": {{"auth": "{auth}"}}}}}}"#),
    )
    .unwrap();
    path
}

/// A token server: `GET /token?service=..&scope=repository:NAME:ACTIONS` with HTTP basic
/// credentials `USER:PASSWORD` gets a JWT granting the requested actions; anything else 401.
pub struct TokenServer {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    pub cert: PathBuf,
    /// Scopes of the tokens issued so far.
    pub issued: Arc<Mutex<Vec<String>>>,
    /// Token requests refused so far.
    pub refused: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    addr: String,
}

impl TokenServer {
    pub fn start(dir: &Path) -> Self {
        let (key_path, _) = openssl_keypair(dir, "token-signer", "P-256");
        let cert = dir.join("token-signer.crt");
        run(std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-new",
                "-days",
                "2",
                "-subj",
                "/CN=cocoon-test-token",
                "-key",
            ])
            .arg(&key_path)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null()));
        let key = SigningKey::from_pkcs8_pem(&fs::read_to_string(&key_path).unwrap()).unwrap();
        // x5c: base64 (standard, padded) DER, i.e. the PEM body without line breaks.
        let x5c: String = fs::read_to_string(&cert)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = Self {
            realm: format!("http://{addr}/token"),
            service: "cocoon-test-registry".into(),
            issuer: "cocoon-test-issuer".into(),
            cert,
            issued: Arc::default(),
            refused: Arc::default(),
            stop: Arc::default(),
            addr,
        };
        let ctx = Arc::new(Issuer {
            key,
            x5c,
            service: server.service.clone(),
            issuer: server.issuer.clone(),
            issued: server.issued.clone(),
            refused: server.refused.clone(),
            counter: AtomicU64::new(0),
        });
        let stop = server.stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let ctx = ctx.clone();
                std::thread::spawn(move || ctx.serve(conn));
            }
        });
        server
    }

    /// The registry `auth:` section that trusts this server.
    pub fn registry_auth(&self) -> String {
        format!(
            "auth: {{token: {{realm: \"{}\", service: {}, issuer: {}, rootcertbundle: {}}}}}\n",
            self.realm,
            self.service,
            self.issuer,
            self.cert.display()
        )
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

struct Issuer {
    key: SigningKey,
    x5c: String,
    service: String,
    issuer: String,
    issued: Arc<Mutex<Vec<String>>>,
    refused: Arc<AtomicU64>,
    counter: AtomicU64,
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

impl Issuer {
    fn serve(&self, mut conn: TcpStream) {
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let mut lines = head.lines();
        let target = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or_default()
            .to_owned();
        let basic = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .and_then(|(_, v)| v.trim().strip_prefix("Basic ").map(str::to_owned));
        let authorized = basic
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .is_some_and(|c| c == format!("{USER}:{PASSWORD}").as_bytes());
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let params: Vec<(String, String)> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (percent_decode(k), percent_decode(v)))
            .collect();
        let service_ok = params
            .iter()
            .any(|(k, v)| k == "service" && *v == self.service);
        let (status, body) = if path != "/token" || !service_ok {
            ("404 Not Found", r#"{"error":"not found"}"#.to_owned())
        } else if !authorized {
            self.refused.fetch_add(1, Ordering::SeqCst);
            (
                "401 Unauthorized",
                r#"{"details":"invalid user name or password"}"#.to_owned(),
            )
        } else {
            let scopes: Vec<String> = params
                .iter()
                .filter(|(k, _)| k == "scope")
                .map(|(_, v)| v.clone())
                .collect();
            let token = self.token(&scopes);
            self.issued.lock().unwrap().extend(scopes);
            (
                "200 OK",
                format!(r#"{{"token":"{token}","access_token":"{token}","expires_in":300}}"#),
            )
        };
        let _ = write!(
            conn,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
    }

    /// An ES256 JWT granting `scopes` (`repository:NAME:ACTION[,ACTION]`).
    fn token(&self, scopes: &[String]) -> String {
        let mut access: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for scope in scopes {
            let mut parts = scope.splitn(3, ':');
            let (Some(kind), Some(name), Some(actions)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            access
                .entry((kind.to_owned(), name.to_owned()))
                .or_default()
                .extend(actions.split(',').map(str::to_owned));
        }
        let access: Vec<serde_json::Value> = access
            .into_iter()
            .map(|((kind, name), actions)| {
                serde_json::json!({"type": kind, "name": name, "actions": actions})
            })
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [self.x5c]});
        let claims = serde_json::json!({
            "iss": self.issuer,
            "sub": USER,
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("cocoon-{}", self.counter.fetch_add(1, Ordering::SeqCst)),
            "access": access,
        });
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let input = format!(
            "{}.{}",
            b64.encode(serde_json::to_vec(&header).unwrap()),
            b64.encode(serde_json::to_vec(&claims).unwrap())
        );
        // JWS ES256: the raw r || s signature over the ASCII signing input.
        let sig: Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", b64.encode(sig.to_bytes()))
    }
}

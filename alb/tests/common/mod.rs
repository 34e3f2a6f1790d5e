//! Shared test fixtures: loopback backends, certificates, alb instances
//! (in-process or the real binary), curl and a rustls client.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Certs {
    pub _dir: tempfile::TempDir,
    pub demo: certgen::Demo,
}

impl Certs {
    pub fn f(&self) -> &certgen::DemoFiles {
        &self.demo.files
    }
}

pub fn certs() -> Certs {
    let dir = tempfile::tempdir().unwrap();
    let demo = certgen::demo(dir.path().join("certs"), &certgen::DemoOptions::default()).unwrap();
    Certs { _dir: dir, demo }
}

/// A loopback HTTP/1.1 backend that answers with JSON describing the
/// request it saw. Paths: `/healthz` (status from `health_status`),
/// `/slow` (waits 400 ms), `/ws` (101 + minimal WebSocket echo),
/// `/drop` (reads the request, then closes without answering).
pub struct TestBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub posts: Arc<AtomicUsize>,
    pub health_ok: Arc<AtomicBool>,
    pub seen: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
    task: JoinHandle<()>,
}

impl TestBackend {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// Stops accepting and drops every open connection (a crash).
    pub fn kill(&self) {
        self.task.abort();
    }
}

pub async fn backend(name: &str) -> TestBackend {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let posts = Arc::new(AtomicUsize::new(0));
    let health_ok = Arc::new(AtomicBool::new(true));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (n, h, p, ho, s) = (
        name.to_string(),
        hits.clone(),
        posts.clone(),
        health_ok.clone(),
        seen.clone(),
    );
    let task = tokio::spawn(async move {
        // Connections live in the JoinSet, so aborting this task drops them.
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                continue;
            };
            let (n, h, p, ho, s) = (n.clone(), h.clone(), p.clone(), ho.clone(), s.clone());
            conns.spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (n, h, p, ho, s) = (n.clone(), h.clone(), p.clone(), ho.clone(), s.clone());
                    async move { backend_handle(req, &n, &h, &p, &ho, &s).await }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .with_upgrades()
                    .await;
            });
            while conns.try_join_next().is_some() {}
        }
    });
    TestBackend {
        name: name.into(),
        addr,
        hits,
        posts,
        health_ok,
        seen,
        task,
    }
}

async fn backend_handle(
    mut req: Request<Incoming>,
    name: &str,
    hits: &AtomicUsize,
    posts: &AtomicUsize,
    health_ok: &AtomicBool,
    seen: &Mutex<Vec<BTreeMap<String, String>>>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let is_check = req
        .headers()
        .get("user-agent")
        .is_some_and(|u| u == "alb-health-check");
    if req.uri().path() == "/healthz" || is_check {
        let st = if health_ok.load(Ordering::Relaxed) {
            200
        } else {
            500
        };
        return Ok(Response::builder()
            .status(st)
            .body(Full::new(Bytes::from("hc")))
            .unwrap());
    }
    hits.fetch_add(1, Ordering::Relaxed);
    if req.method() == hyper::Method::POST {
        posts.fetch_add(1, Ordering::Relaxed);
    }
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                v.to_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    seen.lock().unwrap().push(headers.clone());
    match req.uri().path() {
        "/slow" => tokio::time::sleep(Duration::from_millis(400)).await,
        "/drop" if name.starts_with("dropper") => {
            let _ = req.body_mut().collect().await;
            return Err(std::io::Error::other("dropping the connection on purpose"));
        }
        "/ws" => {
            let up = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(u) = up.await {
                    ws_echo(TokioIo::new(u)).await;
                }
            });
            return Ok(Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("upgrade", "websocket")
                .header("connection", "upgrade")
                .header("sec-websocket-accept", "test-not-checked")
                .body(Full::new(Bytes::new()))
                .unwrap());
        }
        _ => {}
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let j = serde_json::json!({"backend": name, "headers": headers, "body_len": body});
    Ok(Response::builder()
        .header("x-backend", name)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(j.to_string())))
        .unwrap())
}

/// Minimal RFC 6455 echo: reads masked client frames (payload < 126
/// bytes) and sends each payload back unmasked with the same opcode.
async fn ws_echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) {
    loop {
        let mut h = [0u8; 2];
        if s.read_exact(&mut h).await.is_err() {
            return;
        }
        let len = (h[1] & 0x7f) as usize;
        let mut mask = [0u8; 4];
        let mut payload = vec![0u8; len];
        if len >= 126
            || s.read_exact(&mut mask).await.is_err()
            || s.read_exact(&mut payload).await.is_err()
        {
            return;
        }
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        let mut out = vec![h[0], len as u8];
        out.extend_from_slice(&payload);
        if s.write_all(&out).await.is_err() || h[0] & 0x0f == 0x8 {
            return;
        }
    }
}

/// Fills `{ca}`, `{cert}`, `{key}`, `{crl}` with demo paths.
pub fn fill(template: &str, c: &Certs) -> String {
    let f = c.f();
    template
        .replace("{ca}", &f.ca_cert.display().to_string())
        .replace("{cert}", &f.server_cert.display().to_string())
        .replace("{key}", &f.server_key.display().to_string())
        .replace("{crl}", &f.crl.display().to_string())
}

pub fn backends_yaml(bs: &[&TestBackend]) -> String {
    bs.iter().map(|b| format!("  - {}\n", b.url())).collect()
}

/// Starts alb in-process from YAML text (written to `dir/alb.yaml` so
/// reload has a file).
pub async fn start_alb(dir: &Path, yaml: &str) -> alb::Running {
    let p = dir.join("alb.yaml");
    std::fs::write(&p, yaml).unwrap();
    let cfg = alb::Config::load(&p).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    alb::start(cfg, Some(p)).await.unwrap()
}

/// The real `alb` binary with its stderr collected line by line.
pub struct AlbProcess {
    pub child: Child,
    pub port: u16,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl AlbProcess {
    pub fn spawn(config: &Path) -> AlbProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_alb"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        let l2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.trim().to_string());
                }
                l2.lock().unwrap().push(line);
            }
        });
        let addr: SocketAddr = match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(a) => a.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!("alb did not start: {:?}", log.lock().unwrap());
            }
        };
        AlbProcess {
            child,
            port: addr.port(),
            log,
        }
    }

    /// Waits (up to 3 s) for a log line containing every one of `parts`.
    pub fn wait_log(&self, parts: &[&str]) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Some(l) = self
                .log
                .lock()
                .unwrap()
                .iter()
                .find(|l| parts.iter().all(|p| l.contains(p)))
            {
                return Some(l.clone());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for AlbProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct CurlOut {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs curl with a 5 s cap (off the async runtime).
pub async fn curl(args: Vec<String>) -> CurlOut {
    tokio::task::spawn_blocking(move || {
        let o = Command::new("curl")
            .args(["-sS", "--max-time", "5", "--noproxy", "*"])
            .args(&args)
            .output()
            .expect("curl");
        CurlOut {
            ok: o.status.success(),
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        }
    })
    .await
    .unwrap()
}

pub fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// curl args for HTTPS to `port` with the demo CA and `client` (a demo
/// name such as "client1", or None).
pub fn tls_args(c: &Certs, client: Option<&str>) -> Vec<String> {
    let f = c.f();
    let mut v = vec!["--cacert".to_string(), f.ca_cert.display().to_string()];
    if let Some(n) = client {
        v.push("--cert".into());
        v.push(f.dir.join(format!("{n}.crt")).display().to_string());
        v.push("--key".into());
        v.push(f.dir.join(format!("{n}.key")).display().to_string());
    }
    v
}

/// A rustls client connection to 127.0.0.1:`port` (SNI `sni`).
pub async fn tls_connect(
    c: &Certs,
    port: u16,
    client: Option<&str>,
    sni: &str,
    alpn: &[&str],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let f = c.f();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&f.ca_cert).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match client {
        Some(n) => {
            let chain =
                vec![CertificateDer::from_pem_file(f.dir.join(format!("{n}.crt"))).unwrap()];
            let key = PrivateKeyDer::from_pem_file(f.dir.join(format!("{n}.key"))).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
}

/// A keep-alive HTTP/1.1 sender over any stream.
pub async fn h1_over<S>(io: S) -> hyper::client::conn::http1::SendRequest<Full<Bytes>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    tx
}

pub async fn get_on(
    tx: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &str,
) -> (StatusCode, String) {
    tx.ready().await.unwrap();
    let r = tx
        .send_request(
            Request::get(path)
                .header("host", "localhost")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    status_and_body(r).await
}

/// A response's status and its whole body as text.
async fn status_and_body(r: hyper::Response<hyper::body::Incoming>) -> (StatusCode, String) {
    let st = r.status();
    (st, String::from_utf8_lossy(&r.into_body().collect().await.unwrap().to_bytes()).into())
}

/// Plain-HTTP request through a fresh connection to alb (`protocol: http`).
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (StatusCode, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tx = h1_over(tcp).await;
    let r = tx
        .send_request(
            Request::builder()
                .method(method)
                .uri(path)
                .header("host", "alb.test")
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap(),
        )
        .await
        .unwrap();
    status_and_body(r).await
}

pub fn backend_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["backend"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("<not a backend answer: {body}>"))
}

pub fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn _unused(_: PathBuf) {}

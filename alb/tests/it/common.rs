//! Shared test fixtures: loopback backends, certificates, alb instances
//! (in-process or the real binary), curl and a rustls client.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
pub use lb_common::userspace::watch::ConfigFile;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
pub use xdplb_tests::backend::{Backend, Reply};

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

/// A loopback backend (the workspace's one mock backend,
/// `xdplb_tests::backend`) that answers with JSON describing the request it
/// saw and counts hits, POSTs and headers.
pub async fn backend(name: &str) -> Backend {
    Backend::builder(name).reply(Reply::Json).start().unwrap()
}

/// The same, but `/drop` reads the request and hangs up without an answer.
pub async fn dropper(name: &str) -> Backend {
    Backend::builder(name).reply(Reply::Json).drops_requests().start().unwrap()
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

/// A TLS listener on an ephemeral port with the demo server certificate,
/// no admin API and no active checks, balancing `bs`; `extra` is appended
/// (placeholders such as `{ca}` are filled there too).
pub fn tls_config(c: &Certs, bs: &[&Backend], extra: &str) -> String {
    fill(
        &format!(
            "listen: [\"127.0.0.1:0\"]\ncert_location: {{cert}}\nkey_location: {{key}}\nadmin: {{enabled: false}}\n\
             health: {{enabled: false}}\nbackend_servers:\n{}{extra}",
            backends_yaml(bs)
        ),
        c,
    )
}

pub fn backends_yaml(bs: &[&Backend]) -> String {
    bs.iter().map(|b| format!("  - {}\n", b.url())).collect()
}

/// Starts alb in-process from YAML text (written to `dir/alb.yaml` so
/// reload has a file).
pub async fn start_alb(dir: &Path, yaml: &str) -> alb::Running {
    let p = dir.join("alb.yaml");
    std::fs::write(&p, yaml).unwrap();
    let file = ConfigFile::new(&p);
    let cfg = alb::Config::load(&p).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    alb::start(cfg, Some(file)).await.unwrap()
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
        AlbProcess { child, port: addr.port(), log }
    }

    /// Waits (up to 3 s) for a log line containing every one of `parts`.
    pub fn wait_log(&self, parts: &[&str]) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| parts.iter().all(|p| l.contains(p))) {
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
    pub stdout: String,
    pub stderr: String,
}

/// Runs curl with a 5 s cap (off the async runtime).
pub async fn curl(args: Vec<String>) -> CurlOut {
    tokio::task::spawn_blocking(move || {
        let o = Command::new("curl").args(["-sS", "--max-time", "5", "--noproxy", "*"]).args(&args).output().expect("curl");
        CurlOut { ok: o.status.success(), stdout: String::from_utf8_lossy(&o.stdout).into(), stderr: String::from_utf8_lossy(&o.stderr).into() }
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
pub async fn tls_connect(c: &Certs, port: u16, client: Option<&str>, sni: &str, alpn: &[&str]) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let f = c.f();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&f.ca_cert).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots);
    let mut cfg = match client {
        Some(n) => {
            let chain = vec![CertificateDer::from_pem_file(f.dir.join(format!("{n}.crt"))).unwrap()];
            let key = PrivateKeyDer::from_pem_file(f.dir.join(format!("{n}.key"))).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(ServerName::try_from(sni.to_string()).unwrap(), tcp).await
}

/// A keep-alive HTTP/1.1 sender over any stream.
pub async fn h1_over<S>(io: S) -> hyper::client::conn::http1::SendRequest<Full<Bytes>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.unwrap();
    tokio::spawn(conn);
    tx
}

pub async fn get_on(tx: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>, path: &str) -> (StatusCode, String) {
    tx.ready().await.unwrap();
    let r = tx.send_request(Request::get(path).header("host", "localhost").body(Full::new(Bytes::new())).unwrap()).await.unwrap();
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
        .send_request(Request::builder().method(method).uri(path).header("host", "alb.test").body(Full::new(Bytes::from(body.to_string()))).unwrap())
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

//! The lab's TLS tier, for two-tier setups (client → XDP VIP → alb →
//! HTTP backends): `albs` alb instances in backend namespaces `1..=albs`,
//! each listening on its own backend address, balancing over `lab-backend`
//! servers in the next `backends` namespaces.
//!
//! ```text
//!  client ── lb (XDP VIP :443 → albs :8443) ── bridge ─┬─ be1: alb1 198.18.1.11:8443 ─┐
//!                                                      ├─ be2: alb2 198.18.1.12:8443 ─┤ health-checked,
//!                                                      ├─ be3: lab-backend :8080  ◄───┤ round robin
//!                                                      └─ be4: lab-backend :8080  ◄───┘
//! ```
//!
//! The PKI is made with certgen as a library: a fresh CA per tier and one
//! server certificate for `alb.xdplb.test` and every alb address (plus any
//! VIP addresses the caller names), so clients verify the server as they
//! would in production ([`AlbTier::tls`]). Certificates, configs and each
//! alb's log live in a temporary directory removed with the tier. The albs
//! are tracked children of the [`Lab`] (stopped when it goes down); an alb
//! can be killed with SIGKILL and started again with the same config.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    ops::RangeInclusive,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use super::{
    addr,
    config::{Check, Vip},
    Host, Lab,
};
use crate::{http, metrics, workspace};

/// The port every alb listens on (TLS).
pub const ALB_PORT: u16 = 8443;
/// alb's admin API and metrics, on loopback inside each alb's namespace.
pub const ADMIN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9090);
/// The name the server certificate carries and clients send as SNI.
pub const SERVER_NAME: &str = "alb.xdplb.test";

/// What to run.
#[derive(Clone, Debug)]
pub struct TierSpec {
    pub albs: u8,
    pub backends: u8,
    /// alb's active checks of the backends (`GET /health`).
    pub check: Check,
    /// More IP addresses for the server certificate (e.g. the VIPs).
    pub cert_ips: Vec<IpAddr>,
    /// `KEY=VALUE` environment for every alb (e.g. `TOKIO_WORKER_THREADS=1`).
    pub env: Vec<String>,
    /// More top-level alb YAML, appended to each generated config.
    pub extra_yaml: String,
    /// Bind each alb's admin API (and `/metrics`) on its backend-segment
    /// address instead of [`ADMIN`] on loopback, so a scraper elsewhere in
    /// the lab (Prometheus in the lb namespace) reaches every alb.
    pub admin_on_lab_address: bool,
    /// mTLS: `Some(cn)` issues a client certificate with that common name
    /// from the tier's CA and makes every alb require a client certificate
    /// from that CA, passing the verified subject (`CN=<cn>`) to the
    /// backends in `X-Client-Identity`. `None`: no client certificates.
    pub mtls_client: Option<String>,
}

impl TierSpec {
    pub fn new(albs: u8, backends: u8, check: Check) -> TierSpec {
        TierSpec { albs, backends, check, cert_ips: Vec::new(), env: Vec::new(), extra_yaml: String::new(), admin_on_lab_address: false, mtls_client: None }
    }
}

/// A running tier; see the module docs.
pub struct AlbTier {
    spec: TierSpec,
    tls: http::Tls,
    ca_cert: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// The client certificate and key, with mTLS.
    client: Option<(PathBuf, PathBuf)>,
    alb: PathBuf,
    // Last: removed after everything that names a file in it.
    dir: tempfile::TempDir,
}

impl AlbTier {
    /// Makes the PKI, starts the backends and the albs, and waits until each
    /// alb answers `GET /health` over TLS from the lb namespace.
    pub fn start(lab: &mut Lab, spec: TierSpec) -> Result<AlbTier> {
        let needed = u16::from(spec.albs) + u16::from(spec.backends);
        if spec.albs == 0 || spec.backends == 0 {
            bail!("an alb tier needs at least one alb and one backend (asked for {} and {})", spec.albs, spec.backends);
        }
        if needed > u16::from(lab.backend_count()) {
            bail!("{} albs and {} backends need {needed} backend namespaces; lab {:?} has {}", spec.albs, spec.backends, lab.name(), lab.backend_count());
        }
        let alb = workspace::binary("alb")?;
        let dir = tempfile::Builder::new().prefix(&format!("xdplb-{}-alb-", lab.name())).tempdir().context("creating the alb tier's directory")?;
        let pki = make_pki(dir.path(), spec.albs, &spec.cert_ips, spec.mtls_client.as_deref())?;
        let tls = match &pki.client {
            Some((cert, key)) => http::Tls::with_client_cert(&pki.ca_cert, SERVER_NAME, cert, key)?,
            None => http::Tls::new(&pki.ca_cert, SERVER_NAME)?,
        };
        let tier = AlbTier { spec, tls, ca_cert: pki.ca_cert, cert: pki.cert, key: pki.key, client: pki.client, alb, dir };
        let backends: Vec<u8> = tier.backend_ids().collect();
        lab.start_backends_on(&backends, &[])?;
        for i in tier.alb_ids() {
            std::fs::write(tier.config_path(i), tier.config_yaml(i)).with_context(|| format!("writing alb{i}'s config"))?;
            tier.spawn(lab, i)?;
        }
        for i in tier.alb_ids() {
            tier.wait_ready(lab, i, Duration::from_secs(20))?;
        }
        Ok(tier)
    }

    /// Backend namespaces holding an alb.
    pub fn alb_ids(&self) -> RangeInclusive<u8> {
        1..=self.spec.albs
    }

    /// Backend namespaces holding a `lab-backend` (named `be<id>`).
    pub fn backend_ids(&self) -> RangeInclusive<u8> {
        self.spec.albs + 1..=self.spec.albs + self.spec.backends
    }

    pub fn spec(&self) -> &TierSpec {
        &self.spec
    }

    /// The lab host of alb `i`.
    pub fn host(i: u8) -> Host {
        Host::Backend(i)
    }

    /// Alb `i`'s TLS listener over IPv4.
    pub fn addr(i: u8) -> SocketAddr {
        SocketAddr::new(addr::backend_v4(i).into(), ALB_PORT)
    }

    /// The tracked-child label of alb `i`.
    pub fn label(i: u8) -> String {
        format!("alb{i}")
    }

    /// The client certificate and key (PEM files) when the tier requires mTLS.
    pub fn client_cert(&self) -> Option<(&Path, &Path)> {
        self.client.as_ref().map(|(c, k)| (c.as_path(), k.as_path()))
    }

    /// The identity alb passes to the backends for the tier's client
    /// certificate (its subject, `CN=<cn>`), when the tier requires mTLS.
    pub fn client_identity(&self) -> Option<String> {
        self.spec.mtls_client.as_ref().map(|cn| format!("CN={cn}"))
    }

    /// A client setup that trusts this tier's CA and expects [`SERVER_NAME`]
    /// (presenting the tier's client certificate when it requires mTLS).
    pub fn tls(&self) -> &http::Tls {
        &self.tls
    }

    /// The tier's CA certificate (PEM), e.g. for curl's `--cacert`.
    pub fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }

    /// Where alb `i`'s stdout and stderr go (appended across restarts).
    pub fn log_path(&self, i: u8) -> PathBuf {
        self.dir.path().join(format!("alb{i}.log"))
    }

    /// Alb `i`'s log so far.
    pub fn log(&self, i: u8) -> Result<String> {
        let path = self.log_path(i);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// Alb `i`'s generated config file.
    pub fn config_path(&self, i: u8) -> PathBuf {
        self.dir.path().join(format!("alb{i}.yaml"))
    }

    /// An lb-user VIP whose backends are the albs, checked by TCP connect
    /// on the tier's schedule.
    pub fn vip(&self, name: &str, address: impl std::fmt::Display, port: u16) -> Vip {
        let vip = Vip::new(name, address, port).health_check(&self.spec.check.lb_user_tcp());
        self.alb_ids().fold(vip, |vip, i| vip.backend(AlbTier::addr(i)))
    }

    /// Where alb `i`'s admin API and metrics listen: [`ADMIN`] inside its
    /// namespace, or its backend address with [`TierSpec::admin_on_lab_address`].
    pub fn admin_addr(&self, i: u8) -> SocketAddr {
        if self.spec.admin_on_lab_address {
            SocketAddr::new(addr::backend_v4(i).into(), ADMIN.port())
        } else {
            ADMIN
        }
    }

    /// Alb `i`'s pid while it runs.
    pub fn pid(&self, lab: &Lab, i: u8) -> Option<u32> {
        lab.pid(&AlbTier::label(i))
    }

    /// SIGKILLs alb `i`: it vanishes as a crashed process does.
    pub fn kill9(&self, lab: &mut Lab, i: u8) -> Result<()> {
        lab.kill(&AlbTier::label(i))
    }

    /// Starts alb `i` again with its config and waits until it answers.
    pub fn restart(&self, lab: &mut Lab, i: u8) -> Result<()> {
        self.spawn(lab, i)?;
        self.wait_ready(lab, i, Duration::from_secs(20))
    }

    /// Waits (at most `limit`) until alb `i` answers `GET /health` (proxied
    /// to a backend) over TLS from the lb namespace.
    pub fn wait_ready(&self, lab: &mut Lab, i: u8, limit: Duration) -> Result<()> {
        let (addr, tls) = (AlbTier::addr(i), self.tls.clone());
        let probe = move || http::get_tls(addr, &tls, "/health", Duration::from_secs(2)).map(|r| r.status == 200);
        lab.wait_until(Host::Lb, &format!("alb{i} answering https://{addr}/health"), limit, probe)
    }

    /// Alb `i`'s view of its backends (backend id → healthy), from its
    /// admin API.
    pub fn backend_health(&self, lab: &Lab, i: u8) -> Result<BTreeMap<String, bool>> {
        let admin = self.admin_addr(i);
        crate::netns::run_in(&lab.ns(AlbTier::host(i)), move || backend_health(admin))
    }

    /// Alb `i`'s Prometheus samples.
    pub fn metrics(&self, lab: &Lab, i: u8) -> Result<metrics::Samples> {
        let admin = self.admin_addr(i);
        crate::netns::run_in(&lab.ns(AlbTier::host(i)), move || metrics::scrape(admin, Duration::from_secs(5)))
    }

    fn spawn(&self, lab: &mut Lab, i: u8) -> Result<u32> {
        let mut args: Vec<String> = vec!["RUST_LOG=info".into()];
        args.extend(self.spec.env.iter().cloned());
        args.push(self.alb.display().to_string());
        args.push("--config".into());
        args.push(self.config_path(i).display().to_string());
        lab.spawn_logged(AlbTier::host(i), &AlbTier::label(i), Path::new("/usr/bin/env"), &args, &self.log_path(i))
    }

    fn config_yaml(&self, i: u8) -> String {
        let v6 = SocketAddr::new(addr::backend_v6(i).into(), ALB_PORT);
        let mtls = match &self.client {
            Some(_) => format!("mtls: {{ mode: required, ca: {} }}\n", self.ca_cert.display()),
            None => String::new(),
        };
        let backends: String = self.backend_ids().map(|b| format!("  - http://{}:{}\n", addr::backend_v4(b), crate::backend::PORT)).collect();
        format!(
            "# alb{i} of lab tier {dir}\nlisten: [\"{v4}\", \"{v6}\"]\ncert_location: {cert}\nkey_location: {key}\n\
             admin: {{ enabled: true, listen: \"{admin}\" }}\nhealth: {health}\nreload: {{ poll_interval: 0 }}\n\
             {mtls}backend_servers:\n{backends}{extra}",
            dir = self.dir.path().display(),
            v4 = AlbTier::addr(i),
            admin = self.admin_addr(i),
            cert = self.cert.display(),
            key = self.key.display(),
            health = self.spec.check.alb("/health"),
            extra = self.spec.extra_yaml,
        )
    }
}

/// `GET /api/health` of the alb admin API at `admin` (run it inside the
/// alb's namespace): backend id → healthy, over every pool.
pub fn backend_health(admin: SocketAddr) -> Result<BTreeMap<String, bool>> {
    let r = http::get(admin, "/api/health", Duration::from_secs(2))?;
    let v: serde_json::Value = serde_json::from_str(&r.body).with_context(|| format!("alb /api/health answered {} {:?}", r.status, r.body))?;
    let mut out = BTreeMap::new();
    for pool in v["pools"].as_array().context("alb /api/health without pools")? {
        for b in pool["backends"].as_array().context("alb /api/health pool without backends")? {
            let id = b["id"].as_str().context("backend without id")?;
            out.insert(id.to_owned(), b["healthy"].as_bool().context("backend without healthy")?);
        }
    }
    Ok(out)
}

/// The tier's certificate files.
struct Pki {
    ca_cert: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client: Option<(PathBuf, PathBuf)>,
}

/// A CA and one server certificate for every alb address (v4 and v6), the
/// extra `ips` and [`SERVER_NAME`]; with `client_cn`, a client certificate too.
fn make_pki(dir: &Path, albs: u8, ips: &[IpAddr], client_cn: Option<&str>) -> Result<Pki> {
    let ca_dir = dir.join("pki");
    let ca =
        certgen::Ca::create(&ca_dir, &certgen::CaOptions { common_name: "xdplb lab CA".into(), ..Default::default() }).context("creating the tier's CA")?;
    let mut sans: Vec<IpAddr> = (1..=albs).flat_map(|i| [addr::backend_v4(i).into(), addr::backend_v6(i).into()]).collect();
    sans.extend_from_slice(ips);
    let issued = ca.issue_server(&certgen::ServerOptions::new("alb", &[SERVER_NAME], &sans)).context("issuing the albs' certificate")?;
    let client = match client_cn {
        Some(cn) => {
            let c = ca.issue_client(&certgen::ClientOptions::new("client", cn)).with_context(|| format!("issuing the client certificate CN={cn}"))?;
            Some((c.cert_path.clone(), c.key_path.clone()))
        }
        None => None,
    };
    Ok(Pki { ca_cert: ca.cert_path(), cert: issued.cert_path.clone(), key: issued.key_path.clone(), client })
}

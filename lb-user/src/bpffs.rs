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

/// Detaches the link pinned for `iface`, if any, then removes `iface`'s pin
/// directory and, if it was the last, xdplb's root.
pub fn remove_pins(iface: &str) -> Result<()> {
    let dir = pin_dir(iface);
    let link = dir.join(LINK_PIN);
    if link.exists() {
        force_detach_pinned_link(&link)?;
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    // Only succeeds when empty, which is what we want: other interfaces keep theirs.
    let _ = std::fs::remove_dir(PIN_ROOT);
    Ok(())
}

/// File name of an interface's pinned XDP link: while it exists the program
/// stays attached, even with no lb-user running.
pub const LINK_PIN: &str = "link";

/// Directory of the per-interface lock files.
pub const LOCK_DIR: &str = "/run/xdplb";

/// Exclusive hold on an interface by one running lb-user (flock, so it goes
/// away with the process however it ends).
pub struct IfaceLock {
    _file: std::fs::File,
}

/// Takes the lock for `iface`, or fails naming the lb-user that holds it.
pub fn lock_iface(iface: &str) -> Result<IfaceLock> {
    use std::{io::Write as _, os::fd::AsRawFd as _};
    std::fs::create_dir_all(LOCK_DIR).with_context(|| format!("creating {LOCK_DIR}"))?;
    let path = Path::new(LOCK_DIR).join(format!("{iface}.lock"));
    let mut file =
        std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a valid fd.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        bail!("an lb-user (pid {}) is already attached to {iface}; stop it first (Ctrl-C or SIGTERM), or run `lb-user detach --iface {iface}`", holder.trim());
    }
    file.set_len(0)?;
    write!(file, "{}", std::process::id())?;
    Ok(IfaceLock { _file: file })
}

/// The pid of the lb-user holding `iface`, if one is running.
pub fn lock_holder(iface: &str) -> Option<i32> {
    use std::os::fd::AsRawFd as _;
    let path = Path::new(LOCK_DIR).join(format!("{iface}.lock"));
    let file = std::fs::File::open(&path).ok()?;
    // SAFETY: flock on a valid fd; released right away if we got it.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
        return None;
    }
    std::fs::read_to_string(&path).ok()?.trim().parse().ok()
}

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_DETACH: libc::c_long = 34;

/// Detaches the link pinned at `path` right now (BPF_LINK_DETACH). Removing
/// the last reference to a link also detaches it, but the kernel may do that
/// a little later; an operator who asked for "detach" expects it done when
/// the command returns.
pub fn force_detach_pinned_link(path: &Path) -> Result<()> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).context("path with NUL")?;
    // union bpf_attr for BPF_OBJ_GET: pathname, bpf_fd, file_flags, path_fd.
    #[repr(C)]
    struct ObjGet {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
    }
    let get = ObjGet { pathname: c.as_ptr() as u64, bpf_fd: 0, file_flags: 0, path_fd: 0 };
    // SAFETY: bpf(2) with a correctly laid out attribute and its size.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET, &get as *const ObjGet, std::mem::size_of::<ObjGet>()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("opening pinned link {}", path.display()));
    }
    // union bpf_attr for BPF_LINK_DETACH: link_fd.
    #[repr(C)]
    struct LinkDetach {
        link_fd: u32,
    }
    let detach = LinkDetach { link_fd: fd as u32 };
    // SAFETY: as above; the fd is ours and closed right after.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_LINK_DETACH, &detach as *const LinkDetach, std::mem::size_of::<LinkDetach>()) };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the fd we opened.
    unsafe { libc::close(fd as i32) };
    if rc < 0 {
        return Err(err).with_context(|| format!("detaching link {}", path.display()));
    }
    Ok(())
}

//! Hand-made pinned maps, for testing how lb-user treats pins it did not make
//! (e.g. left by a build with other map layouts).

use std::{ffi::CString, path::Path};

use anyhow::{bail, Context as _, Result};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_OBJ_PIN: libc::c_long = 6;

pub const MAP_TYPE_ARRAY: u32 = 2;
pub const MAP_TYPE_LRU_HASH: u32 = 9;

/// Creates a map with the given type and sizes and pins it at `path`.
pub fn pin_map(path: &Path, map_type: u32, key_size: u32, value_size: u32, max_entries: u32) -> Result<()> {
    // The head of union bpf_attr for BPF_MAP_CREATE; the kernel zero-fills the rest.
    #[repr(C)]
    struct MapCreate {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    }
    let create = MapCreate { map_type, key_size, value_size, max_entries };
    // SAFETY: bpf(2) with a correctly laid out attribute prefix and its size.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_CREATE, &create as *const MapCreate, std::mem::size_of::<MapCreate>()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("BPF_MAP_CREATE");
    }
    let name = CString::new(path.as_os_str().as_encoded_bytes()).context("path with NUL")?;
    // union bpf_attr for BPF_OBJ_PIN: pathname, bpf_fd, file_flags.
    #[repr(C)]
    struct ObjPin {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    let pin = ObjPin { pathname: name.as_ptr() as u64, bpf_fd: fd as u32, file_flags: 0 };
    // SAFETY: as above; the fd is ours and closed right after (the pin keeps the map).
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_PIN, &pin as *const ObjPin, std::mem::size_of::<ObjPin>()) };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the fd we created.
    unsafe { libc::close(fd as i32) };
    if rc < 0 {
        bail!("pinning a map at {}: {err}", path.display());
    }
    Ok(())
}

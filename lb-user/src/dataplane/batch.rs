//! Batched map reads and writes, bpf(2)'s BPF_MAP_LOOKUP_BATCH and
//! BPF_MAP_UPDATE_BATCH called directly: a Maglev table half is written,
//! and read back for its check, in one call instead of a syscall per slot.

use anyhow::{bail, Context as _, Result};
use aya::maps::{Array, MapData};

/// Writes `values` into slots `first..` of the u32 array `map` with one
/// BPF_MAP_UPDATE_BATCH: a Maglev table half is 65537 slots by default, and a
/// syscall per slot made every rebuild (reload, health change) cost tens of
/// milliseconds per VIP.
pub(super) fn write_slots(map: &mut aya::maps::Map, name: &str, first: u32, values: &[u32]) -> Result<()> {
    use aya::maps::IterableMap as _;
    // Checks the map's type and value size.
    let array = Array::<&mut MapData, u32>::try_from(map)?;
    let end = u64::from(first) + values.len() as u64;
    if end > u64::from(array.len()) {
        bail!("writing {name}: slots {first}..{end} beyond its {} entries", array.len());
    }
    let keys: Vec<u32> = (first..).take(values.len()).collect();
    update_batch(array.map(), &keys, values).with_context(|| format!("writing {name} slots {first}..{end}"))
}

/// Writes `keys[i] → values[i]` into `map` with one BPF_MAP_UPDATE_BATCH
/// (any map type whose kernel side has batch ops: arrays, hashes, LRU
/// hashes). `K` and `V` must be the map's plain-data key and value types;
/// their sizes are checked against the map.
pub fn update_batch<K: aya::Pod, V: aya::Pod>(map: &MapData, keys: &[K], values: &[V]) -> Result<()> {
    if keys.len() != values.len() {
        bail!("{} keys but {} values", keys.len(), values.len());
    }
    check_sizes::<K, V>(map)?;
    if keys.is_empty() {
        return Ok(());
    }
    let count = u32::try_from(keys.len()).context("too many entries for one batch")?;
    let done = batch(BPF_MAP_UPDATE_BATCH, map, 0, keys.as_ptr() as u64, values.as_ptr() as u64, count)?;
    if done != count {
        bail!("the kernel wrote {done} of {count} entries");
    }
    Ok(())
}

/// Reads slots `first..first + count` of the u32 array `map` with one
/// BPF_MAP_LOOKUP_BATCH (reading a Maglev table back after writing it).
pub fn read_slots(map: &MapData, first: u32, count: u32) -> Result<Vec<u32>> {
    check_sizes::<u32, u32>(map)?;
    let mut keys = vec![0u32; count as usize];
    let mut values = vec![0u32; count as usize];
    if count == 0 {
        return Ok(values);
    }
    // The batch starts after the key `in_batch` points to (none: at 0).
    let prev = first.wrapping_sub(1);
    let in_batch = if first == 0 { 0 } else { &prev as *const u32 as u64 };
    let done = batch(BPF_MAP_LOOKUP_BATCH, map, in_batch, keys.as_mut_ptr() as u64, values.as_mut_ptr() as u64, count)
        .with_context(|| format!("reading slots {first}..{}", u64::from(first) + u64::from(count)))?;
    if done != count || keys.first() != Some(&first) {
        bail!("reading slots from {first}: the kernel returned {done} of {count}, starting at {:?}", keys.first());
    }
    Ok(values)
}

fn check_sizes<K, V>(map: &MapData) -> Result<()> {
    let info = map.info()?;
    let (k, v) = (std::mem::size_of::<K>() as u32, std::mem::size_of::<V>() as u32);
    if (info.key_size(), info.value_size()) != (k, v) {
        bail!("the map has {}/{} byte keys/values, the caller {k}/{v}", info.key_size(), info.value_size());
    }
    Ok(())
}

/// One batch command over `count` entries at `keys`/`values` (user
/// pointers to plain data of the map's key and value sizes, checked by the
/// callers, that outlive the call); the number of entries the kernel handled.
fn batch(cmd: libc::c_long, map: &MapData, in_batch: u64, keys: u64, values: u64, count: u32) -> Result<u32> {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    // union bpf_attr for the batch commands.
    #[repr(C)]
    struct Batch {
        in_batch: u64,
        out_batch: u64,
        keys: u64,
        values: u64,
        count: u32,
        map_fd: u32,
        elem_flags: u64,
        flags: u64,
    }
    // Where the kernel reports the last key it handled (lookups only).
    let mut out_key = [0u8; 64];
    let mut attr =
        Batch { in_batch, out_batch: out_key.as_mut_ptr() as u64, keys, values, count, map_fd: map.fd().as_fd().as_raw_fd() as u32, elem_flags: 0, flags: 0 };
    // SAFETY: bpf(2) with a correctly laid out attribute; the callers pass
    // buffers of `count` entries of the map's sizes; `out_key` is larger
    // than any key of these maps.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, &mut attr as *mut Batch, std::mem::size_of::<Batch>()) };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        // The kernel reports how many entries it handled before failing.
        bail!("{err} after {} of {count} entries", attr.count);
    }
    Ok(attr.count)
}

/// bpf(2) command numbers (include/uapi/linux/bpf.h).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

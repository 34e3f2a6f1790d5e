//! Clearing and copying without `memset`/`memmove`.
//!
//! bpf-linker keeps LLVM from expanding `memset` and `memmove` inline (only
//! constant-size `memcpy` is expanded), so a byte-aligned array copy or a
//! zeroed struct becomes a BPF-to-BPF call into a byte-at-a-time loop (about
//! four instructions per byte). On the per-packet path that cost more than
//! the map lookups. These helpers use word-sized loads and stores on places
//! whose alignment the shared types guarantee (`FlowKey` is 8-aligned,
//! `VipKey` and `BackendInfo` 4-aligned, `ReverseNat` 8-aligned; map values
//! are 8-aligned in the kernel). Volatile stores keep LLVM from merging the
//! zero stores back into a `memset`.

use lb_common::lb::FlowKey;

/// Sets every byte of `key` to zero (five 64-bit stores).
#[inline(always)]
pub fn zero_key(key: &mut FlowKey) {
    // SAFETY: a valid FlowKey; all-zero is a valid FlowKey.
    unsafe { zero(key as *mut FlowKey) }
}

/// Sets every byte of `*v` to zero with 64-bit stores.
///
/// # Safety
/// `v` is valid for writes; `T` is 8-aligned, a multiple of 8 bytes long
/// (checked at compile time) and valid when all-zero.
#[inline(always)]
pub unsafe fn zero<T>(v: *mut T) {
    const { assert!(core::mem::align_of::<T>() >= 8 && core::mem::size_of::<T>() % 8 == 0) };
    let w = v as *mut u64;
    let mut i = 0;
    while i < core::mem::size_of::<T>() / 8 {
        // SAFETY: in bounds and aligned, per the function's contract.
        unsafe { w.add(i).write_volatile(0) };
        i += 1;
    }
}

/// Copies a 16-byte address between 4-aligned places (fields of the shared
/// key/value types, see the module comment).
#[inline(always)]
pub fn copy_addr(dst: &mut [u8; 16], src: &[u8; 16]) {
    let (d, s) = (dst.as_mut_ptr() as *mut u32, src.as_ptr() as *const u32);
    // SAFETY: both are 16 bytes and 4-aligned (callers pass fields of the
    // 4/8-aligned shared types); any bit pattern is a valid address.
    unsafe {
        d.write(s.read());
        d.add(1).write(s.add(1).read());
        d.add(2).write(s.add(2).read());
        d.add(3).write(s.add(3).read());
    }
}

/// Copies `N` bytes from a packet field at an even offset (every header
/// starts at one) into a 4-aligned place, as halfwords: a byte array copy
/// from the packet would be expanded into one load and one store per byte.
///
/// # Safety
/// `src` is valid for reads of `N` bytes and 2-aligned; `N` is even.
#[inline(always)]
pub unsafe fn copy_from_packet<const N: usize>(dst: &mut [u8; N], src: *const [u8; N]) {
    const { assert!(N % 2 == 0) };
    let (d, s) = (dst.as_mut_ptr() as *mut u16, src as *const u16);
    let mut i = 0;
    while i < N / 2 {
        // SAFETY: in bounds and 2-aligned on both sides (callers pass fields
        // of the 4/8-aligned shared types as `dst`).
        unsafe { d.add(i).write(s.add(i).read()) };
        i += 1;
    }
}

/// Stores an IPv4 address in the 16-byte form (first 4 bytes, rest zero) of
/// a 4-aligned field.
#[inline(always)]
pub fn set_v4(dst: &mut [u8; 16], v4: [u8; 4]) {
    let d = dst.as_mut_ptr() as *mut u32;
    // SAFETY: 16 bytes, 4-aligned (see copy_addr).
    unsafe {
        d.write(u32::from_ne_bytes(v4));
        d.add(1).write_volatile(0);
        d.add(2).write_volatile(0);
        d.add(3).write_volatile(0);
    }
}

/// Whether two 16-byte addresses in 4-aligned places are equal.
#[inline(always)]
pub fn addr_eq(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let (x, y) = (a.as_ptr() as *const u32, b.as_ptr() as *const u32);
    // SAFETY: as in copy_addr.
    unsafe { (x.read() ^ y.read()) | (x.add(1).read() ^ y.add(1).read()) | (x.add(2).read() ^ y.add(2).read()) | (x.add(3).read() ^ y.add(3).read()) == 0 }
}

/// Whether a MAC address (at an even offset) is not all zero: zero is
/// `BackendInfo::mac`'s "none configured".
#[inline(always)]
pub fn mac_is_set(mac: &[u8; 6]) -> bool {
    let m = mac.as_ptr() as *const u16;
    // SAFETY: 6 bytes at an even offset, read as three u16.
    unsafe { (m.read() | m.add(1).read() | m.add(2).read()) != 0 }
}

/// Copies a MAC address as three 16-bit words (both places at even offsets:
/// Ethernet header fields and `bpf_fib_lookup`'s `smac`/`dmac`).
#[inline(always)]
pub fn copy_mac(dst: *mut [u8; 6], src: *const [u8; 6]) {
    let (d, s) = (dst as *mut u16, src as *const u16);
    // SAFETY: callers pass valid, bounds-checked 6-byte places at even offsets.
    unsafe {
        d.write(s.read());
        d.add(1).write(s.add(1).read());
        d.add(2).write(s.add(2).read());
    }
}

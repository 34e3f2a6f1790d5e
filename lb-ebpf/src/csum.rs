//! Incremental internet-checksum updates (RFC 1624, eqn. 3):
//! `HC' = ~(~HC + ~m + m')`, accumulated over every 16-bit word that changes.
//!
//! Two domains: network order (`replace`, `apply`: words assembled from
//! bytes, used where header fields are read as values), and memory order
//! (`swap_words`, `apply_ne`: words loaded as they lie in the packet, for
//! the per-packet NAT rewrite). Both give the same checksum: the
//! one's-complement sum of byte-swapped words is the byte-swapped sum
//! (RFC 1071, section 2 B), so an update computed from words in memory order
//! applies to the checksum field as it lies in memory. Memory order needs no
//! byte loads and swaps: an IPv6 address is 8 halfword loads instead of 16
//! byte loads, shifts and swaps per side.

/// Adds `~old + new` for each 16-bit word of two equal-length byte arrays.
#[inline(always)]
pub fn replace<const N: usize>(mut acc: u32, old: &[u8; N], new: &[u8; N]) -> u32 {
    let mut i = 0;
    while i + 1 < N {
        acc += u32::from(!u16::from_be_bytes([old[i], old[i + 1]]));
        acc += u32::from(u16::from_be_bytes([new[i], new[i + 1]]));
        i += 2;
    }
    acc
}

/// Adds `~old + new` for one 16-bit value, in the domain of the rest of
/// the sum (host-order values for network order, `to_be()` for memory order).
#[inline(always)]
pub fn replace16(acc: u32, old: u16, new: u16) -> u32 {
    acc + u32::from(!old) + u32::from(new)
}

#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Applies an accumulated change to a checksum field as stored in the packet
/// (network order) and returns the new stored value.
#[inline(always)]
pub fn apply(stored: u16, acc: u32) -> u16 {
    let check = u16::from_be(stored);
    (!fold(u32::from(!check) + acc)).to_be()
}

/// Writes the `N` 16-bit words at `new` over those at `field` and returns
/// `acc` plus `~old + new` over them, in memory order (module doc).
///
/// # Safety
/// `field` is valid for reads and writes of `N` halfwords and 2-aligned (a
/// packet header field at an even offset: every header starts at one);
/// `new` is valid for reads of `N` halfwords and 2-aligned.
#[inline(always)]
pub unsafe fn swap_words<const N: usize>(mut acc: u32, field: *mut u16, new: *const u16) -> u32 {
    let mut i = 0;
    while i < N {
        // SAFETY: in bounds and aligned, per the function's contract.
        unsafe {
            let (old, word) = (field.add(i).read(), new.add(i).read());
            field.add(i).write(word);
            acc += u32::from(!old) + u32::from(word);
        }
        i += 1;
    }
    acc
}

/// [`apply`] for a change accumulated in memory order: `stored` is the
/// checksum field as it lies in memory, and so is the result.
#[inline(always)]
pub fn apply_ne(stored: u16, acc: u32) -> u16 {
    !fold(u32::from(!stored) + acc)
}

/// [`apply_ne`] for UDP: a zero checksum means "none" over IPv4 and stays
/// zero; a computed zero is sent as 0xffff (RFC 768). Both values read the
/// same in either byte order.
#[inline(always)]
pub fn apply_udp_ne(stored: u16, acc: u32) -> u16 {
    if stored == 0 {
        return 0;
    }
    let new = apply_ne(stored, acc);
    if new == 0 {
        0xffff
    } else {
        new
    }
}

//! Incremental internet-checksum updates (RFC 1624, eqn. 3):
//! `HC' = ~(~HC + ~m + m')`, accumulated over every 16-bit word that changes.

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

/// Adds `~old + new` for one 16-bit value (host order).
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

/// Like [`apply`] for UDP: a zero checksum means "none" over IPv4 and stays
/// zero; a computed zero is sent as 0xffff (RFC 768).
#[inline(always)]
pub fn apply_udp(stored: u16, acc: u32) -> u16 {
    if stored == 0 {
        return 0;
    }
    let new = apply(stored, acc);
    if new == 0 {
        0xffff
    } else {
        new
    }
}

//! Traffic counters the XDP program keeps per CPU and userspace sums.

/// Packets and bytes seen for one traffic class on one CPU.
///
/// `bytes` counts whole frames as the XDP program sees them: Ethernet header
/// included, no FCS. (A veth sender's `tx_bytes` leave out the 14-byte
/// Ethernet header, so they read 14 bytes per frame lower.)
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketCounter {
    pub packets: u64,
    pub bytes: u64,
}

impl PacketCounter {
    /// Adds another counter (used when summing per-CPU values).
    #[inline(always)]
    pub fn add(&mut self, other: &PacketCounter) {
        self.packets = self.packets.wrapping_add(other.packets);
        self.bytes = self.bytes.wrapping_add(other.bytes);
    }
}

#[cfg(feature = "user")]
// SAFETY: two u64 fields, repr(C), no padding, every bit pattern valid.
unsafe impl aya::Pod for PacketCounter {}

/// Index into the traffic counter array.
///
/// Every frame is counted in exactly one of the L3 classes (`Ipv4`, `Ipv6`,
/// `OtherL3`, `Malformed`); every frame counted as `Ipv4` or `Ipv6` is also
/// counted in exactly one L4 class (`Tcp`, `Udp`, `OtherL4`). `Malformed` frames
/// (cut short inside the Ethernet/VLAN or IP header, or an IPv4 header with
/// IHL < 5 or a wrong version) get no L4 class. See `docs/xdp.md`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrafficClass {
    Ipv4 = 0,
    Ipv6 = 1,
    OtherL3 = 2,
    Tcp = 3,
    Udp = 4,
    OtherL4 = 5,
    Malformed = 6,
}

/// Number of entries in the traffic counter array.
pub const TRAFFIC_CLASS_COUNT: u32 = 7;

impl TrafficClass {
    /// All classes, in index order.
    pub const ALL: [TrafficClass; TRAFFIC_CLASS_COUNT as usize] = [
        TrafficClass::Ipv4,
        TrafficClass::Ipv6,
        TrafficClass::OtherL3,
        TrafficClass::Tcp,
        TrafficClass::Udp,
        TrafficClass::OtherL4,
        TrafficClass::Malformed,
    ];

    /// Stable, lowercase name used by `lb-user stats` and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            TrafficClass::Ipv4 => "ipv4",
            TrafficClass::Ipv6 => "ipv6",
            TrafficClass::OtherL3 => "other_l3",
            TrafficClass::Tcp => "tcp",
            TrafficClass::Udp => "udp",
            TrafficClass::OtherL4 => "other_l4",
            TrafficClass::Malformed => "malformed",
        }
    }

    /// The array index of this class.
    pub const fn index(self) -> u32 {
        self as u32
    }
}

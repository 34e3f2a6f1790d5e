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
    pub const ALL: [TrafficClass; TRAFFIC_CLASS_COUNT as usize] =
        [TrafficClass::Ipv4, TrafficClass::Ipv6, TrafficClass::OtherL3, TrafficClass::Tcp, TrafficClass::Udp, TrafficClass::OtherL4, TrafficClass::Malformed];

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

/// Index into the per-action statistics array: what the program did with a
/// frame and, for drops and passes that are not plain "not for us", why.
/// Every frame lands in exactly one of these.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Not VIP traffic and not a reply to a NAT flow: left to the kernel.
    PassNotVip = 0,
    /// VIP traffic DNAT-ed to a backend and sent on.
    ForwardNat = 1,
    /// VIP traffic sent on unmodified to the backend's MAC.
    ForwardDsr = 2,
    /// A backend's reply rewritten back to the VIP and sent on.
    ReverseNat = 3,
    /// Rewritten, but no neighbour entry yet: handed to the kernel to forward.
    PassKernelForward = 4,
    DropAllowlistCidr = 5,
    DropAllowlistPort = 6,
    /// The VIP has no healthy backend.
    DropNoBackend = 7,
    /// VIP traffic whose TCP/UDP header is cut short.
    DropMalformedVip = 8,
    /// Fragments addressed to a VIP (no ports to balance on).
    DropFragmentVip = 9,
    /// No route to the backend or client (FIB lookup failed).
    DropNoRoute = 10,
    /// Unparseable frames (see the malformed rule), passed.
    PassMalformed = 11,
    /// ICMP fragmentation-needed / packet-too-big about a tracked flow, sent
    /// on to that flow's backend.
    IcmpToBackend = 12,
}

/// Number of entries in the statistics array.
pub const STAT_COUNT: u32 = 13;

impl Stat {
    pub const ALL: [Stat; STAT_COUNT as usize] = [
        Stat::PassNotVip,
        Stat::ForwardNat,
        Stat::ForwardDsr,
        Stat::ReverseNat,
        Stat::PassKernelForward,
        Stat::DropAllowlistCidr,
        Stat::DropAllowlistPort,
        Stat::DropNoBackend,
        Stat::DropMalformedVip,
        Stat::DropFragmentVip,
        Stat::DropNoRoute,
        Stat::PassMalformed,
        Stat::IcmpToBackend,
    ];

    /// The stat at `index`; out-of-range indexes map to `PassMalformed`
    /// (only the program's own values are ever converted).
    pub const fn from_index(index: u32) -> Stat {
        match index {
            0 => Stat::PassNotVip,
            1 => Stat::ForwardNat,
            2 => Stat::ForwardDsr,
            3 => Stat::ReverseNat,
            4 => Stat::PassKernelForward,
            5 => Stat::DropAllowlistCidr,
            6 => Stat::DropAllowlistPort,
            7 => Stat::DropNoBackend,
            8 => Stat::DropMalformedVip,
            9 => Stat::DropFragmentVip,
            10 => Stat::DropNoRoute,
            12 => Stat::IcmpToBackend,
            _ => Stat::PassMalformed,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Stat::PassNotVip => "pass_not_vip",
            Stat::ForwardNat => "forward_nat",
            Stat::ForwardDsr => "forward_dsr",
            Stat::ReverseNat => "reverse_nat",
            Stat::PassKernelForward => "pass_kernel_forward",
            Stat::DropAllowlistCidr => "drop_allowlist_cidr",
            Stat::DropAllowlistPort => "drop_allowlist_port",
            Stat::DropNoBackend => "drop_no_backend",
            Stat::DropMalformedVip => "drop_malformed_vip",
            Stat::DropFragmentVip => "drop_fragment_vip",
            Stat::DropNoRoute => "drop_no_route",
            Stat::PassMalformed => "pass_malformed",
            Stat::IcmpToBackend => "icmp_to_backend",
        }
    }

    pub const fn index(self) -> u32 {
        self as u32
    }
}

use super::lb::{FlowCounter, MAX_BACKENDS, MAX_VIPS};

/// Every counter of one CPU, as the single value of the per-CPU `COUNTERS`
/// map: the program looks this up once per frame and then only adds to
/// fields (per-CPU memory, so no atomics), instead of one lookup per counter
/// in four maps. 26,432 bytes, below the kernel's 32 KiB limit for a per-CPU
/// value.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters {
    /// By [`TrafficClass::index`].
    pub traffic: [PacketCounter; TRAFFIC_CLASS_COUNT as usize],
    /// By [`Stat::index`].
    pub actions: [PacketCounter; STAT_COUNT as usize],
    /// Forwarded packets by VIP id.
    pub vips: [FlowCounter; MAX_VIPS as usize],
    /// Forwarded packets by backend id.
    pub backends: [FlowCounter; MAX_BACKENDS as usize],
}

impl Counters {
    /// All zero.
    pub const ZERO: Counters = Counters {
        traffic: [PacketCounter { packets: 0, bytes: 0 }; TRAFFIC_CLASS_COUNT as usize],
        actions: [PacketCounter { packets: 0, bytes: 0 }; STAT_COUNT as usize],
        vips: [FlowCounter { packets: 0, bytes: 0, new_flows: 0 }; MAX_VIPS as usize],
        backends: [FlowCounter { packets: 0, bytes: 0, new_flows: 0 }; MAX_BACKENDS as usize],
    };

    /// Adds another CPU's counters (userspace sums the per-CPU values).
    pub fn add(&mut self, other: &Counters) {
        for (a, b) in self.traffic.iter_mut().zip(&other.traffic) {
            a.add(b);
        }
        for (a, b) in self.actions.iter_mut().zip(&other.actions) {
            a.add(b);
        }
        for (a, b) in self.vips.iter_mut().zip(&other.vips).chain(self.backends.iter_mut().zip(&other.backends)) {
            a.add(b);
        }
    }

    pub fn action(&self, stat: Stat) -> PacketCounter {
        self.actions[stat.index() as usize]
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C) arrays of u64-only structs, no padding, every bit pattern valid.
unsafe impl aya::Pod for Counters {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_fit_one_per_cpu_value_without_padding() {
        let fields = core::mem::size_of::<[PacketCounter; (TRAFFIC_CLASS_COUNT + STAT_COUNT) as usize]>()
            + core::mem::size_of::<[FlowCounter; (MAX_VIPS + MAX_BACKENDS) as usize]>();
        assert_eq!(core::mem::size_of::<Counters>(), fields);
        assert_eq!(core::mem::size_of::<Counters>(), 26_432);
        // PCPU_MIN_UNIT_SIZE: the kernel refuses larger per-CPU values.
        assert!(core::mem::size_of::<Counters>() <= 32 * 1024);
    }

    #[test]
    fn add_sums_every_field() {
        let mut one = Counters::ZERO;
        one.traffic[TrafficClass::Udp.index() as usize] = PacketCounter { packets: 1, bytes: 10 };
        one.actions[Stat::ForwardNat.index() as usize] = PacketCounter { packets: 2, bytes: 20 };
        one.vips[3] = FlowCounter { packets: 3, bytes: 30, new_flows: 1 };
        one.backends[1023] = FlowCounter { packets: 4, bytes: 40, new_flows: 2 };
        let mut total = one;
        total.add(&one);
        assert_eq!(total.traffic[TrafficClass::Udp.index() as usize], PacketCounter { packets: 2, bytes: 20 });
        assert_eq!(total.action(Stat::ForwardNat), PacketCounter { packets: 4, bytes: 40 });
        assert_eq!(total.vips[3], FlowCounter { packets: 6, bytes: 60, new_flows: 2 });
        assert_eq!(total.backends[1023], FlowCounter { packets: 8, bytes: 80, new_flows: 4 });
        assert_eq!(total.vips[0], FlowCounter::default());
    }
}

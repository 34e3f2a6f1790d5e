//! The lab's addressing plan. Everything lives in 198.18.0.0/15 (RFC 2544
//! benchmarking) and fd00:198:18::/48, the only ranges lab traffic may use.
//!
//! ```text
//!  client ─── lb ─── [bridge in `sw`] ─┬─ be1
//!   .0.2   .0.1  .1.1                  ├─ be2   198.18.1.11 …
//!                                       └─ be3
//! ```
//! Client segment 198.18.0.0/24 and fd00:198:18::/64; backend segment
//! 198.18.1.0/24 and fd00:198:18:1::/64. VIPs (later) come from 198.18.100.0/24
//! and fd00:198:18:100::/64, routed to the lb by the client.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const LB_CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const LB_BACKEND_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 2);
pub const LB_CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 1);
pub const LB_BACKEND_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 1, 0, 0, 0, 1);

/// The whole lab ranges, routed through the lb by clients and backends.
pub const LAB_NET_V4: &str = "198.18.0.0/15";
pub const LAB_NET_V6: &str = "fd00:198:18::/48";
pub const SEGMENT_PREFIX_V4: u8 = 24;
pub const SEGMENT_PREFIX_V6: u8 = 64;

/// IPv4 address of backend `i` (1-based): 198.18.1.1i.
pub fn backend_v4(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, 10 + i)
}

/// IPv6 address of backend `i` (1-based): fd00:198:18:1::1i.
pub fn backend_v6(i: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x198, 0x18, 1, 0, 0, 0, 0x10 + u16::from(i))
}

/// True for addresses inside the lab ranges; lab code refuses anything else.
pub fn is_lab_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            o[0] == 198 && (o[1] & 0xfe) == 18
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            s[0] == 0xfd00 && s[1] == 0x198 && s[2] == 0x18
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plan_address_is_in_the_lab_ranges() {
        let mut all: Vec<IpAddr> =
            vec![CLIENT_V4.into(), LB_CLIENT_V4.into(), LB_BACKEND_V4.into(), CLIENT_V6.into(), LB_CLIENT_V6.into(), LB_BACKEND_V6.into()];
        for i in 1..=9 {
            all.push(backend_v4(i).into());
            all.push(backend_v6(i).into());
        }
        for ip in all {
            assert!(is_lab_address(ip), "{ip} outside the lab ranges");
        }
        assert_eq!(backend_v6(1).to_string(), "fd00:198:18:1::11");
        assert_eq!(backend_v4(3).to_string(), "198.18.1.13");
    }

    #[test]
    fn outside_addresses_are_refused() {
        for ip in ["198.20.0.1", "10.0.0.1", "127.0.0.1", "fd00:198:19::1", "::1"] {
            assert!(!is_lab_address(ip.parse().unwrap()), "{ip}");
        }
        assert!(is_lab_address("198.19.255.254".parse().unwrap()));
    }
}

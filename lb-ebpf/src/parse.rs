//! Bounds-checked header access and frame classification.
//!
//! Rule for malformed frames (documented in docs/xdp.md): a frame cut short
//! inside the Ethernet header, the VLAN tag or the fixed IP header, or an IPv4
//! header whose version is not 4 or whose IHL is below 5 or runs past the
//! frame, or an IPv6 header whose version is not 6, is `Malformed` and gets no
//! L4 class. It is still passed: the kernel stack drops what it cannot use.

use aya_ebpf::programs::XdpContext;
use lb_common::TrafficClass;

use crate::headers::*;

/// Classes a frame is counted under.
pub struct Class {
    pub l3: TrafficClass,
    pub l4: Option<TrafficClass>,
}

/// Returns a pointer to a `T` at `offset`, or `None` if it would run past the
/// end of the frame. Every read goes through here so the verifier sees the check.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

const MALFORMED: Class = Class { l3: TrafficClass::Malformed, l4: None };

#[inline(always)]
pub fn classify(ctx: &XdpContext) -> Class {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return MALFORMED;
    };
    // SAFETY: ptr_at checked the header lies inside the frame.
    let mut ether_type = u16::from_be(unsafe { (*eth).ether_type });
    let mut offset = core::mem::size_of::<EthHdr>();
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        let Some(vlan) = ptr_at::<VlanHdr>(ctx, offset) else {
            return MALFORMED;
        };
        // SAFETY: bounds checked above.
        ether_type = u16::from_be(unsafe { (*vlan).ether_type });
        offset += core::mem::size_of::<VlanHdr>();
    }
    match ether_type {
        ETH_P_IPV4 => classify_ipv4(ctx, offset),
        ETH_P_IPV6 => classify_ipv6(ctx, offset),
        _ => Class { l3: TrafficClass::OtherL3, l4: None },
    }
}

#[inline(always)]
fn classify_ipv4(ctx: &XdpContext, offset: usize) -> Class {
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, offset) else {
        return MALFORMED;
    };
    // SAFETY: bounds checked above.
    let (version_ihl, protocol) = unsafe { ((*ip).version_ihl, (*ip).protocol) };
    let header_len = ((version_ihl & 0x0f) as usize) * 4;
    if version_ihl >> 4 != 4 || header_len < core::mem::size_of::<Ipv4Hdr>() {
        return MALFORMED;
    }
    if ctx.data() + offset + header_len > ctx.data_end() {
        return MALFORMED;
    }
    Class { l3: TrafficClass::Ipv4, l4: Some(l4_class(protocol)) }
}

#[inline(always)]
fn classify_ipv6(ctx: &XdpContext, offset: usize) -> Class {
    let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, offset) else {
        return MALFORMED;
    };
    // SAFETY: bounds checked above.
    let (first, next_header) = unsafe { ((*ip).version_class_flow[0], (*ip).next_header) };
    if first >> 4 != 6 {
        return MALFORMED;
    }
    // Extension headers are not walked yet: a packet whose first Next Header is
    // an extension header counts as other L4.
    Class { l3: TrafficClass::Ipv6, l4: Some(l4_class(next_header)) }
}

#[inline(always)]
fn l4_class(protocol: u8) -> TrafficClass {
    match protocol {
        IPPROTO_TCP => TrafficClass::Tcp,
        IPPROTO_UDP => TrafficClass::Udp,
        _ => TrafficClass::OtherL4,
    }
}

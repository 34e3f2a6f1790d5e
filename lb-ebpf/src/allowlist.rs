//! Source-prefix and destination-port allowlist.

use aya_ebpf::maps::lpm_trie::Key;
use lb_common::{
    lb::{GlobalConfig, ALLOWLIST_SCOPE_ALL, FAMILY_V4},
    Stat,
};

use crate::{
    maps::{ALLOW_PORTS, ALLOW_V4, ALLOW_V6},
    parse::{Packet, Ports},
};

/// `Some(reason)` when the packet must be dropped. Applies to VIP traffic, or
/// to all traffic when the scope is `all`; the port check applies to packets
/// that have ports.
#[inline(always)]
pub fn check(p: &Packet, cfg: &GlobalConfig, vip_address: bool) -> Option<Stat> {
    if cfg.allowlist_enabled == 0 || !(vip_address || cfg.allowlist_scope == ALLOWLIST_SCOPE_ALL) {
        return None;
    }
    let allowed_src = if p.key.family == FAMILY_V4 {
        ALLOW_V4.get(Key::new(32, [p.key.src[0], p.key.src[1], p.key.src[2], p.key.src[3]])).is_some()
    } else {
        ALLOW_V6.get(Key::new(128, p.key.src)).is_some()
    };
    if !allowed_src {
        return Some(Stat::DropAllowlistCidr);
    }
    if cfg.allow_any_port == 0 && p.ports == Ports::Present {
        // SAFETY: map values are plain data.
        if unsafe { ALLOW_PORTS.get(&p.key.dport) }.is_none() {
            return Some(Stat::DropAllowlistPort);
        }
    }
    None
}

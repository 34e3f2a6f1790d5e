//! Per-CPU counters. Per-CPU slots need no atomics: only this CPU writes its
//! slot, and XDP programs do not preempt each other.

use lb_common::{Stat, TrafficClass};

use crate::maps::{BACKEND_STATS, STATS, TRAFFIC, VIP_STATS};

#[inline(always)]
pub fn traffic(class: TrafficClass, bytes: u64) {
    if let Some(slot) = TRAFFIC.get_ptr_mut(class.index()) {
        // SAFETY: pointer from a successful lookup of this CPU's slot.
        let slot = unsafe { &mut *slot };
        slot.packets += 1;
        slot.bytes += bytes;
    }
}

#[inline(always)]
pub fn stat(stat: Stat, bytes: u64) {
    if let Some(slot) = STATS.get_ptr_mut(stat.index()) {
        // SAFETY: as above.
        let slot = unsafe { &mut *slot };
        slot.packets += 1;
        slot.bytes += bytes;
    }
}

/// Counts a forwarded packet for its VIP and backend.
#[inline(always)]
pub fn flow(vip_id: u32, backend_id: u32, bytes: u64, new_flow: bool) {
    for (map, index) in [(&VIP_STATS, vip_id), (&BACKEND_STATS, backend_id)] {
        if let Some(slot) = map.get_ptr_mut(index) {
            // SAFETY: pointer from a successful lookup of this CPU's slot.
            let slot = unsafe { &mut *slot };
            slot.packets += 1;
            slot.bytes += bytes;
            slot.new_flows += u64::from(new_flow);
        }
    }
}

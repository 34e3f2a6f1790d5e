//! Per-CPU counters: one `Counters` value per CPU, looked up once per frame
//! (`slot`); every count is then a plain add to a field of it. Per-CPU
//! memory needs no atomics: only this CPU writes its value, and XDP programs
//! do not preempt each other.

use lb_common::{Counters, Stat, TrafficClass};

use crate::maps::COUNTERS;

/// This CPU's counters (the frame's only counter-map lookup).
#[inline(always)]
pub fn slot() -> Option<&'static mut Counters> {
    let slot = COUNTERS.get_ptr_mut(0)?;
    // SAFETY: this CPU's value from a successful lookup; see the module doc.
    Some(unsafe { &mut *slot })
}

#[inline(always)]
pub fn traffic(c: &mut Counters, class: TrafficClass, bytes: u64) {
    if let Some(slot) = c.traffic.get_mut(class.index() as usize) {
        slot.packets += 1;
        slot.bytes += bytes;
    }
}

#[inline(always)]
pub fn stat(c: &mut Counters, stat: Stat, bytes: u64) {
    if let Some(slot) = c.actions.get_mut(stat.index() as usize) {
        slot.packets += 1;
        slot.bytes += bytes;
    }
}

/// Counts a forwarded packet for its VIP and backend.
#[inline(always)]
pub fn flow(c: &mut Counters, vip_id: u32, backend_id: u32, bytes: u64, new_flow: bool) {
    if let Some(slot) = c.vips.get_mut(vip_id as usize) {
        slot.packets += 1;
        slot.bytes += bytes;
        slot.new_flows += u64::from(new_flow);
    }
    if let Some(slot) = c.backends.get_mut(backend_id as usize) {
        slot.packets += 1;
        slot.bytes += bytes;
        slot.new_flows += u64::from(new_flow);
    }
}

//! Per-CPU traffic counters.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use lb_common::{PacketCounter, TrafficClass, TRAFFIC_CLASS_COUNT};

#[map(name = "TRAFFIC")]
static TRAFFIC: PerCpuArray<PacketCounter> =
    PerCpuArray::with_max_entries(TRAFFIC_CLASS_COUNT, 0);

/// Adds one frame of `bytes` to `class`. Per-CPU values need no atomics: only
/// this CPU writes its slot, and XDP programs do not preempt each other.
#[inline(always)]
pub fn count(class: TrafficClass, bytes: u64) {
    if let Some(slot) = TRAFFIC.get_ptr_mut(class.index()) {
        // SAFETY: the pointer comes from a successful map lookup for this CPU.
        let slot = unsafe { &mut *slot };
        slot.packets += 1;
        slot.bytes += bytes;
    }
}

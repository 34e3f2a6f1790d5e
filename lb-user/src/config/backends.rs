//! The rules of backends, which the file's validation (`validate.rs`) and
//! runtime changes through the control API (`crate::overrides`) share: a
//! backend's own fields, what its VIP requires of it, and the capacity of a
//! whole config. One implementation, so a backend added at runtime meets
//! exactly the rules of one written in the file.

use super::limits::*;
use super::raw::RawBackend;
use super::validate::Check;
use super::*;

/// `prefix.field`, or `field` alone for an empty prefix (a runtime backend's
/// fields are named as the request body has them).
fn at(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

fn family(a: IpAddr) -> &'static str {
    if a.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// The rules over a config's backends as a whole: per-VIP and total
/// counts, and a Maglev table large enough for every Maglev VIP's total
/// weight. The file's validation and every runtime change
/// ([`capacity_errors`]) apply them.
pub(super) fn capacity(c: &mut Check, m: &MaglevConfig, vips: &[Vip]) {
    for (i, v) in vips.iter().enumerate() {
        if v.backends.len() > MAX_BACKENDS_PER_VIP as usize {
            c.err(format!("vips[{i}].backends"), format!("has {} backends; at most {MAX_BACKENDS_PER_VIP} per VIP are supported", v.backends.len()));
        }
        let total = v.total_weight();
        if v.algorithm.uses_maglev() && m.size < total {
            c.err(
                "maglev.size",
                format!(
                    "{} is smaller than the total backend weight {total} of vips[{i}] ({}); the table needs at least one slot per unit of weight: use a larger prime (≥ 100 × {total} recommended) or lower the weights",
                    m.size, v.name
                ),
            );
        }
    }
    let total: usize = vips.iter().map(|v| v.backends.len()).sum();
    if total > MAX_BACKENDS as usize {
        c.err("vips", format!("has {total} backends over all VIPs; at most {MAX_BACKENDS} are supported"));
    }
}

/// [`capacity`] of a validated config (after a runtime change).
pub(super) fn capacity_errors(config: &Config) -> Vec<FieldError> {
    let mut c = Check::new();
    capacity(&mut c, &config.maglev, &config.vips);
    c.errors
}

/// A backend given at runtime (the control API's request body) for `vip`:
/// the rules of a backend the file lists under that VIP, with the problems
/// named by the body's fields (`weight`, `mac`, ...).
pub(super) fn runtime_backend(raw: &RawBackend, vip: &Vip) -> Result<Backend, Vec<FieldError>> {
    let mut c = Check::new();
    if let Some(b) = backend(&mut c, "", raw, vip.algorithm) {
        backend_in_vip(&mut c, "", &b, Some(vip.address), Some(vip.port), vip.forwarding);
        if c.errors.is_empty() {
            return Ok(b);
        }
    }
    Err(c.errors)
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The rules a backend obeys because of its VIP (`bp` names the backend,
/// "" for a request body): the VIP's address family, `mac` only with DSR,
/// DSR keeps the VIP's port.
pub(super) fn backend_in_vip(c: &mut Check, bp: &str, b: &Backend, vip_addr: Option<IpAddr>, vip_port: Option<u16>, forwarding: Forwarding) {
    if let Some(vip_addr) = vip_addr {
        if vip_addr.is_ipv4() != b.address.is_ipv4() {
            c.err(
                at(bp, "address"),
                format!(
                    "{} is {} but the VIP {} is {}; a backend must have its VIP's address family",
                    b.address,
                    family(b.address),
                    vip_addr,
                    family(vip_addr)
                ),
            );
        }
    }
    if forwarding == Forwarding::Nat && b.mac.is_some() {
        c.err(
            at(bp, "mac"),
            "is used only with forwarding: dsr (a NAT backend's next hop comes from the kernel's route and neighbour tables); drop it or set forwarding: dsr",
        );
    }
    if let (Forwarding::Dsr, Some(vp)) = (forwarding, vip_port) {
        if b.port != vp {
            c.err(
                at(bp, "port"),
                format!(
                    "{} differs from the VIP's port {vp}; forwarding dsr only rewrites the destination MAC and cannot rewrite ports: set port: {vp} or use forwarding: nat",
                    b.port
                ),
            );
        }
    }
}

/// One backend's own fields; `bp` names it (`vips[0].backends[1]`, or ""
/// for a request body).
pub(super) fn backend(c: &mut Check, bp: &str, r: &RawBackend, algorithm: Algorithm) -> Option<Backend> {
    let before = c.errors.len();
    let p = |field: &str| at(bp, field);
    let address = c.ip(&p("address"), r.address.as_ref(), "backend");
    let port = c.port(&p("port"), r.port);
    let weight = match r.weight {
        None => Some(1),
        Some(w) => match c.int(&p("weight"), w, WEIGHT_MIN..=WEIGHT_MAX, "a weight") {
            Some(w) if w != 1 && algorithm == Algorithm::RoundRobin => {
                c.err(p("weight"), format!("{w} has no effect: round_robin treats backends equally; drop the weight or use algorithm: maglev"));
                None
            }
            w => w,
        },
    };
    let mac = match r.mac.as_deref() {
        None => None,
        Some(text) => match parse_mac(text) {
            Some(m) if m == [0; 6] || m[0] & 1 == 1 => {
                c.err(p("mac"), format!("{text:?} is not a unicast MAC address (all-zero, multicast or broadcast)"));
                None
            }
            Some(m) => Some(m),
            None => {
                c.err(p("mac"), format!("{text:?} is not a MAC address; write six hex bytes like \"02:00:00:00:00:11\""));
                None
            }
        },
    };
    if c.errors.len() != before {
        return None;
    }
    Some(Backend { address: address?, port: port?, weight: weight?, mac })
}

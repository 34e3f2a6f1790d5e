//! The oracle: what the program may do with a frame (docs/xdp.md), decided
//! from the reference parser's view of it (`reference.rs`) and the fuzz
//! network's configuration (`net.rs`), never from the program's own parser.
//!
//! - It never returns `XDP_ABORTED` (or anything but DROP, PASS, TX, REDIRECT).
//! - A frame it sends on (`XDP_TX` / `XDP_REDIRECT`) is one of:
//!   1. a well-formed TCP/UDP packet to a configured VIP:port/protocol from
//!      a source and to a port the allowlist admits, sent to a backend of
//!      that VIP (the one Maglev names, for the Maglev VIPs); NAT rewrites
//!      the destination address and port to the backend's, DSR nothing;
//!   2. a well-formed reply from a backend that matches a NAT flow the
//!      fuzzer saw forwarded earlier (a reverse-NAT entry), its source
//!      rewritten to that flow's VIP:port (to one of them when flows of one
//!      client address:port to several NAT VIPs share that backend, see
//!      `Oracle::reverse`);
//!   3. an ICMP "fragmentation needed" / "packet too big" to a VIP address
//!      quoting a flow the fuzzer saw forwarded (so a tracked one), sent to
//!      that flow's backend; NAT rewrites the outer destination and the
//!      quoted source address and port.
//!
//!   Every other byte is the input's, except the MAC addresses (those of
//!   the lab's next hop), the TTL / hop limit (one less) and the checksum
//!   fields; every checksum is exactly as valid as it was (a correct one
//!   stays correct, a corrupt one stays corrupt, a UDP/IPv4 zero stays
//!   zero); `XDP_TX` when the next hop is behind the ingress interface,
//!   `XDP_REDIRECT` otherwise.
//! - A frame it passes or drops is unchanged, unless it was rewritten for
//!   the kernel to forward (neighbour not resolved): then the rewrite must
//!   be one of the above without the MAC and TTL changes.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
};

use super::{
    mutate,
    net::{FuzzNet, Vip},
    reference::{self, Packet, Transport, L4},
    seeds,
};
use crate::testrun::{lab::LabEnv, verdict_name, XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX};

/// What a run amounted to, as the oracle judged it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Judged {
    Dropped,
    Passed,
    ForwardNat,
    ForwardDsr,
    ReverseNat,
    IcmpToBackend,
    /// Rewritten and passed to the kernel to forward.
    KernelForward,
    /// Rewritten, then dropped (no route).
    DroppedRewritten,
}

/// A flow as `(source, destination, protocol)`.
type Flow = (SocketAddr, SocketAddr, u8);

pub struct Oracle {
    net: FuzzNet,
    env: LabEnv,
    /// Flows the fuzzer saw sent to a backend, with that backend's id.
    flows: HashMap<Flow, u32>,
    /// Reverse-NAT entries those flows may have left: reply flow → the VIPs
    /// of the forwarded flows that map to it. More than one when flows of
    /// one client address:port to several NAT VIPs share a backend: to the
    /// backend they are one flow (a NAT collision it cannot tell apart
    /// either), and the program keeps the VIP of the flow whose conntrack
    /// entry it wrote last (new, refreshed once a second, or closing;
    /// docs/xdp.md), which the oracle cannot time. So a reply may leave as
    /// any of them.
    reverse: HashMap<Flow, Vec<SocketAddr>>,
}

/// The rewrite a forwarded frame must show.
struct Want {
    /// Sent by XDP (MACs and TTL change) rather than handed to the kernel.
    routed: bool,
    /// Goes to the lab client; otherwise to lab backend `backend_host` (1-based).
    to_client: bool,
    backend_host: usize,
    /// (offset, bytes) fields that change.
    fields: Vec<(usize, Vec<u8>)>,
    /// Checksum field offsets (compared by validity, not bytes).
    checksums: Vec<usize>,
}

fn addr_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

impl Oracle {
    pub fn new(net: FuzzNet, env: LabEnv) -> Oracle {
        Oracle { net, env, flows: HashMap::new(), reverse: HashMap::new() }
    }

    /// Flows and reverse entries learned so far.
    pub fn model_size(&self) -> (usize, usize) {
        (self.flows.len(), self.reverse.len())
    }

    fn learn_reverse(&mut self, reply: Flow, vip: SocketAddr) {
        let vips = self.reverse.entry(reply).or_default();
        vips.retain(|v| *v != vip);
        vips.push(vip);
    }

    /// Judges one run: `Err` describes a finding.
    pub fn judge(&mut self, ingress: u32, input: &[u8], verdict: u32, output: &[u8]) -> Result<Judged, String> {
        let judged = self.judge_run(ingress, input, verdict, output);
        if judged.is_err() && output.len() == input.len() && output != input {
            self.learn_anyway(input, output);
        }
        judged
    }

    /// After a finding on a rewritten frame: what state the program created
    /// all the same, read with the mutator's lenient header walk, so that
    /// one finding does not make later, correct runs look wrong.
    fn learn_anyway(&mut self, input: &[u8], output: &[u8]) {
        let Some(l) = mutate::layout(input) else { return };
        let (s, d, n) = if l.v6 { (l.l3 + 8, l.l3 + 24, 16) } else { (l.l3 + 12, l.l3 + 16, 4) };
        if input.len() < l.l4 + 4 || input.len() < d + n {
            return;
        }
        let port = |f: &[u8], o: usize| u16::from_be_bytes([f[o], f[o + 1]]);
        let (src, dst) = (SocketAddr::new(ip_at(input, s, n), port(input, l.l4)), SocketAddr::new(ip_at(input, d, n), port(input, l.l4 + 2)));
        let Some(vip) = self.net.vip(dst, l.proto).cloned() else { return };
        let to = SocketAddr::new(ip_at(output, d, n), port(output, l.l4 + 2));
        let chosen = vip.backends.iter().copied().find(|id| {
            if vip.nat() {
                self.net.backend(*id) == Some(to)
            } else {
                output[..6] == self.env.be_mac[FuzzNet::lab_host(*id) - 1]
            }
        });
        if let Some(id) = chosen {
            self.flows.insert((src, dst, l.proto), id);
            if let (true, Some(be)) = (vip.nat(), self.net.backend(id)) {
                self.learn_reverse((be, src, l.proto), dst);
            }
        }
    }

    fn judge_run(&mut self, ingress: u32, input: &[u8], verdict: u32, output: &[u8]) -> Result<Judged, String> {
        let routed = match verdict {
            XDP_ABORTED => return Err("XDP_ABORTED".into()),
            XDP_DROP | XDP_PASS if output == input => return Ok(if verdict == XDP_DROP { Judged::Dropped } else { Judged::Passed }),
            XDP_DROP | XDP_PASS => false,
            XDP_TX | XDP_REDIRECT => true,
            other => return Err(format!("unknown verdict {other}")),
        };
        if output.len() != input.len() {
            return Err(format!("{}: the frame's length changed from {} to {}", verdict_name(verdict), input.len(), output.len()));
        }
        let what = if routed { format!("sent on ({})", verdict_name(verdict)) } else { format!("rewritten and {}", verdict_name(verdict)) };
        let p = reference::parse(input).map_err(|why| format!("{what} a frame the reference parser rejects: {why}"))?;
        let (kind, want, learn) = match p.l4 {
            L4::Transport(t) => {
                let dst = SocketAddr::new(p.ip.dst, t.dport);
                let src = SocketAddr::new(p.ip.src, t.sport);
                if let Some(vip) = self.net.vip(dst, t.proto).cloned() {
                    self.forward(&p, &t, &vip, src, output, routed).map_err(|e| format!("{what} TCP/UDP {src} -> VIP {dst}: {e}"))?
                } else if let Some(vips) = self.reverse.get(&(src, dst, t.proto)) {
                    // The rewrite of any VIP of the reply flow; judged below
                    // against the most recent one when none matches.
                    let fits = |vip: &SocketAddr| self.reply(&p, &t, *vip, routed).ok().filter(|w| self.check(&p, input, output, w).is_ok());
                    let want = match vips.iter().rev().find_map(fits) {
                        Some(w) => w,
                        None => self.reply(&p, &t, vips[vips.len() - 1], routed).map_err(|e| format!("{what} reply {src} -> {dst}: {e}"))?,
                    };
                    (Judged::ReverseNat, want, None)
                } else {
                    return Err(format!("{what} TCP/UDP {src} -> {dst}/{}: neither to a VIP nor a reply of a NAT flow", t.proto));
                }
            }
            L4::Icmp(_) => (Judged::IcmpToBackend, self.icmp(&p, routed).map_err(|e| format!("{what} ICMP: {e}"))?, None),
        };
        self.check(&p, input, output, &want)?;
        if routed {
            let egress = if want.to_client { self.env.lc } else { self.env.lbe };
            let expected = if egress == ingress { XDP_TX } else { XDP_REDIRECT };
            if verdict != expected {
                return Err(format!("{what}: expected {} (egress ifindex {egress}, ingress {ingress})", verdict_name(expected)));
            }
        }
        if let Some((flow, backend, reverse)) = learn {
            self.flows.insert(flow, backend);
            if let Some((reply, vip)) = reverse {
                self.learn_reverse(reply, vip);
            }
        }
        Ok(match (routed, verdict) {
            (true, _) => kind,
            (false, XDP_PASS) => Judged::KernelForward,
            (false, _) => Judged::DroppedRewritten,
        })
    }

    #[allow(clippy::type_complexity)]
    fn forward(
        &self,
        p: &Packet,
        t: &Transport,
        vip: &Vip,
        src: SocketAddr,
        output: &[u8],
        routed: bool,
    ) -> Result<(Judged, Want, Option<(Flow, u32, Option<(Flow, SocketAddr)>)>), String> {
        if !self.net.allow.admits(src.ip(), t.dport) {
            return Err("the allowlist denies this source or port".into());
        }
        let candidates = vip.candidates(src);
        let (_, d, n) = p.ip.addr_offs();
        // Which backend the program chose, read from the output.
        let chosen = if vip.nat() {
            let out_dst = SocketAddr::new(ip_at(output, d, n), u16::from_be_bytes([output[t.off + 2], output[t.off + 3]]));
            candidates
                .iter()
                .copied()
                .find(|id| self.net.backend(*id) == Some(out_dst))
                .ok_or_else(|| format!("NAT to {out_dst}, expected backend id(s) {candidates:?}"))?
        } else {
            if !routed {
                return Err("DSR cannot hand a frame to the kernel".into());
            }
            candidates
                .iter()
                .copied()
                .find(|id| output[..6] == self.env.be_mac[FuzzNet::lab_host(*id) - 1])
                .ok_or_else(|| format!("DSR to MAC {:02x?}, expected backend id(s) {candidates:?}", &output[..6]))?
        };
        let be = self.net.backend(chosen).ok_or("unknown backend")?;
        let mut want = Want { routed, to_client: false, backend_host: FuzzNet::lab_host(chosen), fields: Vec::new(), checksums: vec![t.check_off()] };
        if !p.ip.v6 {
            want.checksums.push(p.ip.off + 10);
        }
        let mut reverse = None;
        if vip.nat() {
            want.fields.push((d, addr_bytes(be.ip())));
            want.fields.push((t.off + 2, be.port().to_be_bytes().to_vec()));
            reverse = Some(((be, src, t.proto), vip.addr));
        }
        let kind = if vip.nat() { Judged::ForwardNat } else { Judged::ForwardDsr };
        Ok((kind, want, Some(((src, vip.addr, t.proto), chosen, reverse))))
    }

    fn reply(&self, p: &Packet, t: &Transport, vip: SocketAddr, routed: bool) -> Result<Want, String> {
        if routed && p.ip.dst != seeds::client(p.ip.v6) {
            return Err("sent on to an address without a neighbour entry".into());
        }
        let (s, _, _) = p.ip.addr_offs();
        let mut want = Want { routed, to_client: true, backend_host: 0, fields: Vec::new(), checksums: vec![t.check_off()] };
        if !p.ip.v6 {
            want.checksums.push(p.ip.off + 10);
        }
        want.fields.push((s, addr_bytes(vip.ip())));
        want.fields.push((t.off, vip.port().to_be_bytes().to_vec()));
        Ok(want)
    }

    fn icmp(&self, p: &Packet, routed: bool) -> Result<Want, String> {
        let L4::Icmp(i) = p.l4 else { unreachable!("icmp() is called for ICMP only") };
        let mtu_error = if p.ip.v6 { i.kind == 2 } else { i.kind == 3 && i.code == 4 };
        if !mtu_error {
            return Err(format!("type {} code {} is no path-MTU error", i.kind, i.code));
        }
        if !self.net.is_vip_address(p.ip.dst) {
            return Err(format!("to {}, which is no VIP address", p.ip.dst));
        }
        let q = i.quote.ok_or("the quote holds no IP header with TCP/UDP ports")?;
        let (vip_end, client) = (SocketAddr::new(q.ip.src, q.sport), SocketAddr::new(q.ip.dst, q.dport));
        let vip = self.net.vip(vip_end, q.proto).ok_or_else(|| format!("quotes {vip_end} -> {client}, and {vip_end}/{} is no VIP", q.proto))?;
        let &id = self.flows.get(&(client, vip_end, q.proto)).ok_or_else(|| format!("quotes {vip_end} -> {client}/{}, a flow never forwarded", q.proto))?;
        let be = self.net.backend(id).ok_or("unknown backend")?;
        let mut want = Want { routed, to_client: false, backend_host: FuzzNet::lab_host(id), fields: Vec::new(), checksums: vec![i.off + 2] };
        if !p.ip.v6 {
            want.checksums.extend([p.ip.off + 10, q.ip.off + 10]);
        }
        if vip.nat() {
            let (_, d, _) = p.ip.addr_offs();
            let (qs, _, _) = q.ip.addr_offs();
            want.fields.push((d, addr_bytes(be.ip())));
            want.fields.push((qs, addr_bytes(be.ip())));
            want.fields.push((q.ip.off + q.ip.hdr_len, be.port().to_be_bytes().to_vec()));
        } else if !routed {
            return Err("DSR cannot hand a frame to the kernel".into());
        }
        Ok(want)
    }

    /// The output is the input with exactly `want`'s changes, and every
    /// checksum as valid as it was.
    fn check(&self, p: &Packet, input: &[u8], output: &[u8], want: &Want) -> Result<(), String> {
        let mut expected = input.to_vec();
        if want.routed {
            let (dmac, smac) = if want.to_client { (self.env.client_mac, self.env.lc_mac) } else { (self.env.be_mac[want.backend_host - 1], self.env.lbe_mac) };
            expected[..6].copy_from_slice(&dmac);
            expected[6..12].copy_from_slice(&smac);
            let ttl = p.ip.ttl_off();
            expected[ttl] = input[ttl].saturating_sub(1);
        }
        for (off, bytes) in &want.fields {
            expected[*off..off + bytes.len()].copy_from_slice(bytes);
        }
        let masked = |i: usize| want.checksums.iter().any(|&c| i == c || i == c + 1);
        let wrong: Vec<String> = (0..output.len())
            .filter(|&i| !masked(i) && output[i] != expected[i])
            .take(8)
            .map(|i| format!("byte {i} is {:02x}, expected {:02x}", output[i], expected[i]))
            .collect();
        if !wrong.is_empty() {
            return Err(format!("output differs from the expected rewrite: {}", wrong.join(", ")));
        }
        let out = reference::parse(output).map_err(|why| format!("the output is no longer well-formed: {why}"))?;
        let sums = |f: &[u8], p: &Packet| {
            let quote = match p.l4 {
                L4::Icmp(i) => i.quote.and_then(|q| reference::ip_header_sum(f, &q.ip)),
                L4::Transport(_) => None,
            };
            [reference::ip_header_sum(f, &p.ip), Some(reference::l4_sum(f, p)), quote]
        };
        let (before, after) = (sums(input, p), sums(output, &out));
        for (name, (b, a)) in ["IPv4 header", "transport/ICMP", "quoted IPv4 header"].iter().zip(before.iter().zip(after.iter())) {
            if b != a {
                return Err(format!("{name} checksum was {b:?} and is {a:?}"));
            }
        }
        Ok(())
    }
}

fn ip_at(frame: &[u8], off: usize, n: usize) -> IpAddr {
    if n == 4 {
        IpAddr::from([frame[off], frame[off + 1], frame[off + 2], frame[off + 3]])
    } else {
        let mut a = [0u8; 16];
        a.copy_from_slice(&frame[off..off + 16]);
        IpAddr::from(a)
    }
}

//! Counters a lab host keeps about what it sent: interface statistics and the
//! per-namespace SNMP MIBs. Tests compare them with what XDP counted.

use anyhow::{Context as _, Result};

use crate::{netns, sys};

/// What a host's interface and IP stack report having sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SentCounters {
    /// Frames and bytes transmitted by the interface (veth: bytes without the
    /// Ethernet header).
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// IPv4 packets handed to IP for sending (Ip: OutRequests).
    pub ipv4_out: u64,
    /// IPv6 packets handed to IP for sending (Ip6OutRequests).
    pub ipv6_out: u64,
    /// TCP segments sent, v4 and v6 together (Tcp: OutSegs + RetransSegs).
    pub tcp_out: u64,
    /// UDP datagrams sent over IPv4 (Udp: OutDatagrams) and IPv6 (Udp6OutDatagrams).
    pub udp4_out: u64,
    pub udp6_out: u64,
}

impl SentCounters {
    pub fn read(ns: &str, dev: &str) -> Result<SentCounters> {
        let json = sys::run_stdout("ip", &["-n", ns, "-s", "-j", "link", "show", dev])?;
        let value: serde_json::Value = serde_json::from_str(&json)?;
        let tx = &value[0]["stats64"]["tx"];
        let snmp = netns::read_file_in(ns, "/proc/thread-self/net/snmp")?;
        let snmp6 = netns::read_file_in(ns, "/proc/thread-self/net/snmp6")?;
        Ok(SentCounters {
            tx_packets: tx["packets"].as_u64().context("no tx packets in ip -s -j")?,
            tx_bytes: tx["bytes"].as_u64().context("no tx bytes in ip -s -j")?,
            ipv4_out: snmp_value(&snmp, "Ip", "OutRequests")?,
            ipv6_out: snmp6_value(&snmp6, "Ip6OutRequests")?,
            tcp_out: snmp_value(&snmp, "Tcp", "OutSegs")? + snmp_value(&snmp, "Tcp", "RetransSegs")?,
            udp4_out: snmp_value(&snmp, "Udp", "OutDatagrams")?,
            udp6_out: snmp6_value(&snmp6, "Udp6OutDatagrams")?,
        })
    }

    pub fn delta(&self, earlier: &SentCounters) -> SentCounters {
        SentCounters {
            tx_packets: self.tx_packets - earlier.tx_packets,
            tx_bytes: self.tx_bytes - earlier.tx_bytes,
            ipv4_out: self.ipv4_out - earlier.ipv4_out,
            ipv6_out: self.ipv6_out - earlier.ipv6_out,
            tcp_out: self.tcp_out - earlier.tcp_out,
            udp4_out: self.udp4_out - earlier.udp4_out,
            udp6_out: self.udp6_out - earlier.udp6_out,
        }
    }
}

/// A value from /proc/net/snmp, whose sections are a header line of names
/// followed by a line of values, both prefixed with `Section:`.
pub fn snmp_value(text: &str, section: &str, field: &str) -> Result<u64> {
    let prefix = format!("{section}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let names = lines.next().with_context(|| format!("no {section} section"))?;
    let values = lines.next().with_context(|| format!("no {section} values"))?;
    let index = names.split_whitespace().position(|n| n == field).with_context(|| format!("no {section} {field}"))?;
    let value = values.split_whitespace().nth(index).with_context(|| format!("short {section} values"))?;
    value.parse().with_context(|| format!("bad {section} {field} value {value:?}"))
}

/// A value from /proc/net/snmp6 (`Name value` per line).
pub fn snmp6_value(text: &str, field: &str) -> Result<u64> {
    let line = text.lines().find(|l| l.split_whitespace().next() == Some(field)).with_context(|| format!("no {field} in snmp6"))?;
    let value = line.split_whitespace().nth(1).with_context(|| format!("no value for {field}"))?;
    value.parse().with_context(|| format!("bad {field} value {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_snmp_sections() {
        let text = "Ip: Forwarding OutRequests\nIp: 1 42\nTcp: OutSegs RetransSegs\nTcp: 7 1\n";
        assert_eq!(snmp_value(text, "Ip", "OutRequests").unwrap(), 42);
        assert_eq!(snmp_value(text, "Tcp", "RetransSegs").unwrap(), 1);
        assert!(snmp_value(text, "Udp", "OutDatagrams").is_err());
        assert_eq!(snmp6_value("Ip6OutRequests  \t 9\nUdp6OutDatagrams 3\n", "Udp6OutDatagrams").unwrap(), 3);
    }
}

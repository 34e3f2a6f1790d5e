//! VIP announcement for a group of LB nodes behind ECMP (docs/scale-out.md).
//!
//! lb-user does not speak BGP. It puts a host route for every VIP address it
//! wants announced into the group's hand-off table (`group.table`, marked
//! with [`RTPROT_XDPLB`]) and removes the route to withdraw it; the node's
//! routing daemon (BIRD, FRR, …) exports that table to its BGP peers. So the
//! daemon decides nothing, and any daemon that can export a kernel table
//! works.
//!
//! An address is announced while the program is attached and at least one
//! VIP on it has a backend that may take new flows (health check up, DSR
//! next hop resolved, not drained: the verdicts the tables are built from).
//! It is withdrawn when that stops being true, on SIGTERM (before the grace
//! period, then detach) and on `lb-user detach`. A crashed lb-user leaves
//! the routes, as it leaves forwarding: the next `attach` takes over the
//! table's routes and brings them to its own view ([`Announcer::sync`]
//! compares against the table, not against memory).

mod record;

use std::{collections::BTreeSet, net::IpAddr};

use anyhow::Result;

pub use self::record::{forget, recall, remember, Record};
pub use crate::rtnl::RTPROT_XDPLB;
use crate::{
    config::{Config, GroupConfig},
    health::HealthSnapshot,
    rtnl::Rtnl,
};

/// Where the hand-off routes live: the kernel (through [`Rtnl`]), or in
/// tests a stand-in.
pub trait RouteTable {
    /// The addresses with a hand-off route in `table`.
    fn routes(&mut self, table: u32) -> Result<BTreeSet<IpAddr>>;
    fn add(&mut self, table: u32, addr: IpAddr) -> Result<()>;
    fn delete(&mut self, table: u32, addr: IpAddr) -> Result<()>;
}

impl RouteTable for Rtnl {
    fn routes(&mut self, table: u32) -> Result<BTreeSet<IpAddr>> {
        self.table_routes(table)
    }
    fn add(&mut self, table: u32, addr: IpAddr) -> Result<()> {
        self.add_table_route(table, addr)
    }
    fn delete(&mut self, table: u32, addr: IpAddr) -> Result<()> {
        self.delete_table_route(table, addr)
    }
}

/// The VIP addresses that should be announced: those with at least one VIP
/// whose backends include one `verdicts` lets take new flows.
pub fn wanted(config: &Config, verdicts: &HealthSnapshot) -> BTreeSet<IpAddr> {
    config.vips.iter().enumerate().filter(|(vi, v)| (0..v.backends.len()).any(|bi| verdicts.is_up(*vi, bi))).map(|(_, v)| v.address).collect()
}

/// Keeps the hand-off table in line with what should be announced.
pub struct Announcer<R: RouteTable = Rtnl> {
    group: GroupConfig,
    routes: R,
}

impl Announcer<Rtnl> {
    /// An announcer on the current network namespace's routing tables.
    pub fn open(group: &GroupConfig) -> Result<Announcer<Rtnl>> {
        Ok(Announcer::new(group, Rtnl::open()?))
    }
}

impl<R: RouteTable> Announcer<R> {
    pub fn new(group: &GroupConfig, routes: R) -> Announcer<R> {
        Announcer { group: group.clone(), routes }
    }

    pub fn group(&self) -> &GroupConfig {
        &self.group
    }

    /// Announces what `config` with `verdicts` wants and withdraws every
    /// other hand-off route of the table (left by an earlier config or
    /// lb-user). Returns whether anything changed.
    pub fn sync(&mut self, config: &Config, verdicts: &HealthSnapshot) -> Result<bool> {
        self.set(&wanted(config, verdicts), "no VIP on the address has a backend that takes new flows")
    }

    /// Withdraws every hand-off route of the table.
    pub fn withdraw_all(&mut self, why: &str) -> Result<bool> {
        self.set(&BTreeSet::new(), why)
    }

    fn set(&mut self, wanted: &BTreeSet<IpAddr>, why: &str) -> Result<bool> {
        let table = self.group.table;
        let have = self.routes.routes(table)?;
        let mut changed = false;
        for addr in wanted.difference(&have) {
            self.routes.add(table, *addr)?;
            log::info!("vip announced address={addr} node={} table={table}", self.group.node);
            changed = true;
        }
        for addr in have.difference(wanted) {
            self.routes.delete(table, *addr)?;
            log::info!("vip withdrawn address={addr} node={} table={table} reason={why:?}", self.group.node);
            changed = true;
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A routing table per number, as the kernel keeps them.
    #[derive(Default)]
    struct Tables(BTreeMap<u32, BTreeSet<IpAddr>>);

    impl RouteTable for &mut Tables {
        fn routes(&mut self, table: u32) -> Result<BTreeSet<IpAddr>> {
            Ok(self.0.get(&table).cloned().unwrap_or_default())
        }
        fn add(&mut self, table: u32, addr: IpAddr) -> Result<()> {
            self.0.entry(table).or_default().insert(addr);
            Ok(())
        }
        fn delete(&mut self, table: u32, addr: IpAddr) -> Result<()> {
            self.0.entry(table).or_default().remove(&addr);
            Ok(())
        }
    }

    fn config() -> Config {
        let yaml = "interfaces: [{ name: eth0 }]\nmaglev: { size: 251 }\ngroup: { node: lb1, table: 100 }\nvips:\n  \
            - { name: web, address: 198.18.100.1, port: 80, backends: [{ address: 198.18.1.11, port: 80 }, { address: 198.18.1.12, port: 80 }] }\n  \
            - { name: tls, address: 198.18.100.1, port: 443, backends: [{ address: 198.18.1.13, port: 443 }] }\n  \
            - { name: v6, address: \"fd00:198:18:100::1\", port: 80, backends: [{ address: \"fd00:198:18:1::11\", port: 80 }] }\n";
        Config::parse(yaml, "test.yaml").unwrap()
    }

    fn addrs(list: &[&str]) -> BTreeSet<IpAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn an_address_is_wanted_while_one_of_its_vips_has_a_backend_up() {
        let c = config();
        assert_eq!(wanted(&c, &HealthSnapshot::all_up(&c)), addrs(&["198.18.100.1", "fd00:198:18:100::1"]));
        let some = HealthSnapshot { up: vec![vec![false, true], vec![false], vec![false]] };
        assert_eq!(wanted(&c, &some), addrs(&["198.18.100.1"]), "one backend of one VIP on the address is enough");
        let other_port = HealthSnapshot { up: vec![vec![false, false], vec![true], vec![true]] };
        assert_eq!(wanted(&c, &other_port), addrs(&["198.18.100.1", "fd00:198:18:100::1"]), "the address carries the :443 VIP too");
        let none = HealthSnapshot { up: vec![vec![false, false], vec![false], vec![false]] };
        assert!(wanted(&c, &none).is_empty());
    }

    #[test]
    fn sync_follows_the_verdicts_and_leaves_other_tables_alone() {
        let c = config();
        let mut tables = Tables::default();
        tables.0.insert(200, addrs(&["198.18.100.9"]));
        {
            let mut a = Announcer::new(c.group.as_ref().unwrap(), &mut tables);
            assert!(a.sync(&c, &HealthSnapshot::all_up(&c)).unwrap());
            assert!(!a.sync(&c, &HealthSnapshot::all_up(&c)).unwrap(), "nothing to change");
            assert!(a.sync(&c, &HealthSnapshot { up: vec![vec![false, false], vec![false], vec![true]] }).unwrap());
        }
        assert_eq!(tables.0[&100], addrs(&["fd00:198:18:100::1"]));
        assert_eq!(tables.0[&200], addrs(&["198.18.100.9"]), "another table is not ours");
        Announcer::new(c.group.as_ref().unwrap(), &mut tables).withdraw_all("stopping").unwrap();
        assert!(tables.0[&100].is_empty());
    }

    #[test]
    fn a_restart_takes_over_the_routes_it_finds() {
        let c = config();
        // Left by a crashed lb-user: one still wanted, one for a VIP since
        // removed from the file.
        let mut tables = Tables::default();
        tables.0.insert(100, addrs(&["198.18.100.1", "198.18.100.7"]));
        Announcer::new(c.group.as_ref().unwrap(), &mut tables).sync(&c, &HealthSnapshot::all_up(&c)).unwrap();
        assert_eq!(tables.0[&100], addrs(&["198.18.100.1", "fd00:198:18:100::1"]));
    }
}

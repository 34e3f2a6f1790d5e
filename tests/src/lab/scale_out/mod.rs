//! The scale-out lab (docs/scale-out.md): the single-LB lab's client,
//! middle host and backend segment, with the middle host as the router
//! (BIRD, ECMP over the nodes' BGP paths, L4 hashing) and N LB node
//! namespaces on the backend segment. Each node runs lb-user one-armed
//! (DSR: a VIP packet goes back out of the link it came in on, to a
//! backend) with a `group:` hand-off table that its own BIRD exports.
//!
//! ```text
//!  client ── router ── [bridge] ─┬─ node1..N  (lb-user + bird)
//!                                └─ be1..M    (VIP on lo, reply via router)
//! ```
//!
//! Everything is built on a [`Lab`], so its teardown (on drop, panic, or
//! `cargo xtask lab down`) removes the nodes too.

mod bird;
mod node;
pub mod plan;
mod restart;
pub mod routes;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use super::{config::ConfigFile, Host, Lab};
use crate::lbuser::LbUser;

pub use node::NodeSpec;

/// A running scale-out lab. Dropping it stops lb-user and BIRD everywhere
/// and tears the lab down.
pub struct ScaleOut {
    spec: NodeSpec,
    /// lb-user of node `i` at index `i - 1` (None once killed). Declared
    /// before `lab` so they stop before the namespaces go.
    lb_users: Vec<Option<(LbUser, ConfigFile)>>,
    lab: Lab,
    nodes: u8,
    dir: PathBuf,
}

impl ScaleOut {
    /// Brings up a lab named `name` with `nodes` LB nodes and `backends`
    /// backends holding `spec.vip` on loopback, starts the backends, BIRD on
    /// the router and every node and lb-user on every node, and waits until
    /// the router's route to the VIP goes through every node.
    pub fn up(name: &str, nodes: u8, backends: u8, spec: &NodeSpec) -> Result<ScaleOut> {
        if !(1..=plan::MAX_NODES).contains(&nodes) {
            bail!("a scale-out lab has 1 to {} LB nodes, not {nodes}", plan::MAX_NODES);
        }
        let lab = Lab::up(name, backends)?;
        let dir = std::env::temp_dir().join(format!("xdplb-scale-out-{name}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // From here on, a failure drops `me`, which removes the lab.
        let mut me = ScaleOut { spec: spec.clone(), lb_users: Vec::new(), lab, nodes, dir };
        if let Err(err) = me.build(spec) {
            // The directory goes with `me`: show what the daemons said first.
            me.print_bird_logs();
            return Err(err.context(format!("bringing up scale-out lab {name:?}")));
        }
        Ok(me)
    }

    /// Like [`ScaleOut::up`] with a fresh unique lab name.
    pub fn up_unique(prefix: &str, nodes: u8, backends: u8, spec: &NodeSpec) -> Result<ScaleOut> {
        ScaleOut::up(&super::unique_name(prefix), nodes, backends, spec)
    }

    fn build(&mut self, spec: &NodeSpec) -> Result<()> {
        let router = self.lab.ns(Host::Lb);
        node::router_sysctls(&router)?;
        let all: Vec<u8> = (1..=self.lab.backend_count()).collect();
        self.lab.add_dsr_vip(spec.vip)?;
        self.start_backends(&all)?;
        let args = bird::write(&self.dir, "router", &bird::router_config(self.nodes))?;
        self.lab.spawn_logged(Host::Lb, "bird router", &bird_binary(), &args, &self.dir.join("router.log"))?;
        for i in 1..=self.nodes {
            node::build(self.lab.name(), i)?;
            let args = bird::write(&self.dir, &format!("node{i}"), &bird::node_config(plan::node_v4(i)))?;
            self.lab.spawn_logged(Host::Node(i), &bird_label(i), &bird_binary(), &args, &self.dir.join(format!("node{i}.log")))?;
            let lb = node::attach(&self.lab, i, spec)?;
            self.lb_users.push(Some(lb));
        }
        let all_nodes: Vec<Ipv4Addr> = (1..=self.nodes).map(plan::node_v4).collect();
        // Through the lab's poll, which also fails at once if a BIRD exits
        // (a config it refuses); its log says why.
        let vip = spec.vip;
        let probe = move || Ok(routes::next_hops(&router, vip)? == all_nodes);
        let what = format!("the router's ECMP route to {vip} over all {} nodes", self.nodes);
        self.lab.wait_until(Host::Lb, &what, Duration::from_secs(30), probe)
    }

    /// Prints every BIRD's log to stderr (for a failed bring-up).
    fn print_bird_logs(&self) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else { return };
        for entry in dir.filter_map(|e| e.ok()).filter(|e| e.path().extension().is_some_and(|x| x == "log")) {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            eprintln!("--- {} ---\n{text}", entry.path().display());
        }
    }

    /// Starts backends `ids` serving the VIP's ports (again, after
    /// [`Lab::stop_backend`]) and waits until they answer.
    pub fn start_backends(&mut self, ids: &[u8]) -> Result<()> {
        let http: Vec<SocketAddr> = self.spec.http_port.map(|p| SocketAddr::new(self.spec.vip, p)).into_iter().collect();
        // On the wildcard address: the VIP for clients, the backend's own
        // address for the nodes' health checks.
        let echo = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), self.spec.echo_port);
        self.lab.start_backends_with_echo(ids, &http, &[echo])
    }

    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    pub fn lab_mut(&mut self) -> &mut Lab {
        &mut self.lab
    }

    pub fn nodes(&self) -> u8 {
        self.nodes
    }

    /// The router's namespace (the single-LB lab's middle host).
    pub fn router_ns(&self) -> String {
        self.lab.ns(Host::Lb)
    }

    /// Node `i`'s interface, where its XDP program is attached.
    pub fn node_iface(&self, i: u8) -> String {
        plan::node_iface(self.lab.name(), i)
    }

    /// The router's current next hops for `vip`.
    pub fn router_next_hops(&self, vip: IpAddr) -> Result<Vec<Ipv4Addr>> {
        routes::next_hops(&self.router_ns(), vip)
    }

    /// `ip route` of the router's main table, for people.
    pub fn router_routes(&self) -> Result<String> {
        crate::sys::run_stdout("ip", &["-n", &self.router_ns(), "route", "show"])
    }

    /// Kills node `i` abruptly, as a lost host: its link goes first (the
    /// router hears nothing, only BFD notices), then its processes are
    /// SIGKILLed.
    pub fn kill_node(&mut self, i: u8) -> Result<()> {
        let slot = self.lb_users.get_mut(usize::from(i).wrapping_sub(1)).with_context(|| format!("no node {i}"))?;
        let (lb, _config) = slot.take().with_context(|| format!("node {i} was already killed"))?;
        crate::sys::ip(&["-n", &self.lab.ns(Host::Switch), "link", "del", &plan::switch_node_iface(self.lab.name(), i)])?;
        lb.kill9();
        self.lab.kill(&bird_label(i))
    }
}

impl Drop for ScaleOut {
    fn drop(&mut self) {
        self.lb_users.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bird_label(i: u8) -> String {
    format!("bird node{i}")
}

/// Debian's `bird2` installs the daemon in /usr/sbin, which a test's PATH
/// may lack.
fn bird_binary() -> PathBuf {
    PathBuf::from("/usr/sbin/bird")
}

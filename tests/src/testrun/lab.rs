//! The harness inside a lab's lb namespace, where `bpf_fib_lookup` sees the
//! lab's real routes and neighbours, so forwarded frames carry real MACs.

use anyhow::Result;
use lb_user::program::LoadOptions;

use super::{pin_to_cpu0, Harness};
use crate::{
    lab::{self, ns_name, Host, Lab},
    netns,
};

/// The lab as the lb sees it: its interfaces and the MACs on each segment.
#[derive(Clone, Debug)]
pub struct LabEnv {
    /// Name of the lab (its namespaces are derived from it).
    pub lab: String,
    /// The lb's client-side and backend-side ifindexes.
    pub lc: u32,
    pub lbe: u32,
    pub client_mac: [u8; 6],
    pub lc_mac: [u8; 6],
    pub lbe_mac: [u8; 6],
    /// `be_mac[i - 1]` is backend `i`'s MAC.
    pub be_mac: Vec<[u8; 6]>,
}

impl LabEnv {
    pub fn of(lab: &Lab) -> Result<LabEnv> {
        LabEnv::read(lab.name(), lab.backend_count())
    }

    /// Reads the interfaces of a running lab by name, for code that did not
    /// create it.
    pub fn read(name: &str, backends: u8) -> Result<LabEnv> {
        let lb_ns = ns_name(name, Host::Lb);
        Ok(LabEnv {
            lab: name.to_owned(),
            lc: lab::ifindex(&lb_ns, &lab::lb_client_iface(name))?,
            lbe: lab::ifindex(&lb_ns, &lab::lb_backend_iface(name))?,
            client_mac: lab::mac(&ns_name(name, Host::Client), &lab::client_iface(name))?,
            lc_mac: lab::mac(&lb_ns, &lab::lb_client_iface(name))?,
            lbe_mac: lab::mac(&lb_ns, &lab::lb_backend_iface(name))?,
            be_mac: (1..=backends).map(|i| lab::mac(&ns_name(name, Host::Backend(i)), &lab::backend_iface(name, i))).collect::<Result<_>>()?,
        })
    }

    /// Loads the program with `opts` in the lab's lb namespace, on a thread
    /// pinned to CPU 0, registers both lb interfaces as redirect targets and
    /// runs `f` with it there.
    pub fn run<T, F>(&self, opts: LoadOptions, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Harness, &LabEnv) -> Result<T> + Send + 'static,
    {
        let env = self.clone();
        netns::run_in(&ns_name(&self.lab, Host::Lb), move || {
            pin_to_cpu0()?;
            let mut xdp = Harness::load_with(&opts)?;
            {
                let mut dp = xdp.dataplane();
                dp.add_tx_port(env.lc)?;
                dp.add_tx_port(env.lbe)?;
            }
            f(&mut xdp, &env)
        })
    }
}

//! Restarting one node's lb-user the way an operator does it: SIGTERM
//! (withdraw the VIPs, wait `group.grace` while the router moves traffic
//! away, detach), then a fresh lb-user attached exactly as the lab first
//! started it. BIRD and the node's link stay up throughout.

use anyhow::{bail, Context as _, Result};

use super::{node, ScaleOut};

impl ScaleOut {
    /// Stops node `i`'s lb-user through SIGTERM and waits for it to exit
    /// (after its grace period); the node stays in the lab, unannounced.
    pub fn stop_node_gracefully(&mut self, i: u8) -> Result<()> {
        let slot = self.lb_users.get_mut(usize::from(i).wrapping_sub(1)).with_context(|| format!("no node {i}"))?;
        let (lb, _config) = slot.take().with_context(|| format!("node {i}'s lb-user is not running"))?;
        let status = lb.terminate().with_context(|| format!("stopping node {i}'s lb-user"))?;
        if !status.success() {
            bail!("node {i}'s lb-user exited with {status} after SIGTERM");
        }
        Ok(())
    }

    /// Starts node `i`'s lb-user again (after [`ScaleOut::stop_node_gracefully`]),
    /// with the same config as at bring-up; it announces the VIP once its
    /// health check passes.
    pub fn start_node(&mut self, i: u8) -> Result<()> {
        let index = usize::from(i).wrapping_sub(1);
        match self.lb_users.get(index) {
            None => bail!("no node {i}"),
            Some(Some(_)) => bail!("node {i}'s lb-user is already running"),
            Some(None) => {}
        }
        let lb = node::attach(&self.lab, i, &self.spec)?;
        self.lb_users[index] = Some(lb);
        Ok(())
    }
}

//! `cargo xtask lab up|down|status`: the network-namespace lab by hand.

use std::net::IpAddr;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use xdplb_tests::lab::{
    self,
    scale_out::{NodeSpec, ScaleOut},
    Host, Lab,
};

use crate::util;

/// Default lab name for `cargo xtask lab`.
pub const DEFAULT_NAME: &str = "xlab";

#[derive(Subcommand, Debug)]
pub enum LabCommand {
    /// Create the lab (client, lb, switch, backends) and leave it running.
    Up {
        /// Lab name: prefix of every namespace and interface (1-8 of a-z0-9).
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
        /// Number of backend hosts (1-9).
        #[arg(long, default_value_t = 3)]
        backends: u8,
        /// Scale-out lab (docs/scale-out.md): the lb host becomes a BIRD
        /// router with ECMP over this many LB nodes (1-9), each running
        /// lb-user and BIRD; runs in the foreground until Ctrl-C.
        #[arg(long)]
        lb_nodes: Option<u8>,
    },
    /// Remove the lab: processes in it, namespaces, links and leftover pins.
    Down {
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
    },
    /// Show the lab's namespaces and addresses.
    Status {
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
    },
}

pub fn lab(command: LabCommand) -> Result<()> {
    util::require_root("lab")?;
    match command {
        LabCommand::Up { name, backends, lb_nodes: Some(nodes) } => scale_out(&name, nodes, backends),
        LabCommand::Up { name, backends, lb_nodes: None } => {
            let lab = Lab::up(&name, backends)?;
            print!("{}", Lab::status(&name)?);
            println!(
                "\nTry:\n  ip netns exec {be1ns} {bin}/lab-backend --name be1 --listen {be1}:8080 &\n  ip netns exec {client} curl http://{be1}:8080/\n  cargo xtask run -- --netns {lb} attach --iface {lc}\nRemove it with: cargo xtask lab down --name {name}",
                client = lab.ns(Host::Client),
                be1 = lab::addr::backend_v4(1),
                be1ns = lab.ns(Host::Backend(1)),
                bin = util::workspace_root().join("target/debug").display(),
                lb = lab.ns(Host::Lb),
                lc = lab.lb_client_iface(),
            );
            lab.persist();
            Ok(())
        }
        LabCommand::Down { name } => {
            Lab::down(&name)?;
            println!("lab {name:?} is down");
            Ok(())
        }
        LabCommand::Status { name } => {
            lab::validate_name(&name)?;
            print!("{}", Lab::status(&name)?);
            Ok(())
        }
    }
}

/// The VIP `lab up --lb-nodes` serves (REQ/ACK echo on port 9000, HTTP on 8080).
const SCALE_OUT_VIP: &str = "198.18.100.7";

/// Brings the scale-out lab up, prints the router's routes and waits for
/// Ctrl-C; dropping the lab stops lb-user, BIRD and the backends and removes it.
fn scale_out(name: &str, nodes: u8, backends: u8) -> Result<()> {
    let vip: IpAddr = SCALE_OUT_VIP.parse().context("the scale-out VIP")?;
    let spec = NodeSpec { http_port: Some(8080), ..NodeSpec::echo(vip) };
    let (tx, rx) = std::sync::mpsc::channel();
    lb_common::userspace::signals::on_stop(move |_| {
        let _ = tx.send(());
    })
    .context("installing the SIGINT/SIGTERM handler")?;
    std::env::set_var(xdplb_tests::workspace::BIN_DIR_ENV, util::workspace_root().join("target/debug"));
    let lab = ScaleOut::up(name, nodes, backends, &spec)?;
    print!("{}", Lab::status(name)?);
    println!("\nrouter routes ({}):\n{}", lab.router_ns(), lab.router_routes()?);
    println!(
        "Try:\n  ip netns exec {client} curl http://{vip}:8080/\n  ip -n {router} route show {vip}\nCtrl-C stops and removes the lab.",
        client = lab.lab().ns(Host::Client),
        router = lab.router_ns(),
    );
    rx.recv().context("waiting for Ctrl-C")?;
    println!("stopping lab {name:?}");
    Ok(())
}

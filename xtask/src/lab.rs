//! `cargo xtask lab up|down|status`: the network-namespace lab by hand.

use anyhow::Result;
use clap::Subcommand;
use xdplb_tests::lab::{self, Host, Lab};

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
        LabCommand::Up { name, backends } => {
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

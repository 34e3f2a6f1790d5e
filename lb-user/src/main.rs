//! `lb-user`: the xdplb control-plane CLI.

use std::{process::ExitCode, sync::mpsc, time::Duration};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use lb_user::{netns, stats::TrafficCounters, AttachMode, Attachment};

/// Load, attach and inspect the xdplb XDP load balancer.
///
/// The XDP program runs in the kernel; lb-user loads it, attaches it to an
/// interface, pins its maps under /sys/fs/bpf/xdplb/<IFACE>/ and reads the
/// counters back. Needs root (CAP_BPF and CAP_NET_ADMIN).
#[derive(Parser, Debug)]
#[command(name = "lb-user", version, propagate_version = true)]
#[command(after_help = "Examples:\n  \
    lb-user attach --iface eth0               # attach, run until Ctrl-C\n  \
    lb-user stats --iface eth0                # counters, from another shell\n  \
    lb-user --netns xldemo-lb stats --iface xldemo-lc --json")]
struct Cli {
    /// Run inside this named network namespace (from `ip netns list`). Only the
    /// network namespace changes, so pins under /sys/fs/bpf stay shared.
    #[arg(long, global = true, value_name = "NAME")]
    netns: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Attach the XDP program to an interface and stay in the foreground.
    ///
    /// Ctrl-C (or SIGTERM) detaches the program and removes the pinned maps.
    /// If lb-user dies, the kernel detaches the program with it.
    Attach {
        /// Interface to attach to (e.g. eth0).
        #[arg(long, value_name = "IFACE")]
        iface: String,
        /// auto lets the kernel choose (native when the driver supports it,
        /// generic otherwise); native fails when the driver lacks XDP; skb
        /// forces generic XDP.
        #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
        mode: AttachMode,
    },
    /// Print the packet and byte counters of an attached program.
    Stats {
        /// Interface the program is attached to.
        #[arg(long, value_name = "IFACE")]
        iface: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lb-user: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Some(name) = &cli.netns {
        netns::enter(name)?;
    }
    match cli.command {
        Command::Attach { iface, mode } => attach(&iface, mode),
        Command::Stats { iface, json } => {
            let counters = TrafficCounters::read_pinned(&iface)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&counters.to_json())?);
            } else {
                print!("{}", counters.to_table());
            }
            Ok(())
        }
    }
}

fn attach(iface: &str, mode: AttachMode) -> Result<()> {
    let (tx, rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .context("installing the Ctrl-C handler")?;
    let attachment = Attachment::attach(iface, mode)?;
    println!("xdplb attached to {iface}; press Ctrl-C to detach");
    // Wake up now and then so a vanished interface is noticed.
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(()) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if lb_user::attach::interface_index(iface).is_err() {
                    log::warn!("interface {iface} disappeared; detaching");
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    attachment.detach()
}

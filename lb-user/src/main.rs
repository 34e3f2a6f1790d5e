//! `lb-user`: the xdplb control-plane CLI.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Parser, Subcommand};
use lb_common::{
    report::{self, Exit},
    userspace::watch::ConfigFile,
};
use lb_user::{
    config::Config,
    neighbours::{self, Neighbours},
    netns,
    stats::Report,
    AttachMode, Attachment,
};

/// The allocator lever (`--features mimalloc`, measured by `cargo xtask bench levers`).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Load, attach and inspect the xdplb XDP load balancer.
///
/// The XDP program runs in the kernel; lb-user loads it, attaches it to an
/// interface, pins its maps under /sys/fs/bpf/xdplb/<IFACE>/ and reads the
/// counters back. Needs root (CAP_BPF and CAP_NET_ADMIN).
#[derive(Parser, Debug)]
#[command(name = "lb-user", version, propagate_version = true)]
#[command(after_help = "Examples:\n  \
    lb-user attach --iface eth0               # count and pass, run until Ctrl-C\n  \
    lb-user attach --config xdplb.yaml        # balance the config's VIPs\n  \
    lb-user stats --iface eth0                # counters, from another shell\n  \
    lb-user --netns xldemo-lb stats --iface xldemo-lc --json\n  \
    lb-user backends list                     # through the control API (docs/operations.md)\n  \
    lb-user backends drain web 198.18.1.11:8080\n\n\
    Exit status: 0 done, 1 runtime error, 2 usage error, 69 no lb-user on --api, 78 config error (see docs/lb-user.md)")]
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
    /// Ctrl-C (or SIGTERM) detaches the program and removes the pins. If
    /// lb-user is killed, the pinned link keeps the program attached and
    /// forwarding; the next attach adopts it, conntrack included.
    ///
    /// With --config, loads the VIPs, backends and allowlist from the YAML
    /// file (see docs/config.md) and attaches to every interface it lists;
    /// with only --iface, attaches a program that counts and passes traffic.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["iface", "config"])))]
    Attach {
        /// Interface to attach to (e.g. eth0), without a config.
        #[arg(long, value_name = "IFACE", conflicts_with = "config")]
        iface: Option<String>,
        /// Balancer config file (YAML).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// auto lets the kernel choose (native when the driver supports it,
        /// generic otherwise); native fails when the driver lacks XDP; skb
        /// forces generic XDP. Default: the config's attach_mode, else auto.
        #[arg(long, value_enum)]
        mode: Option<AttachMode>,
    },
    /// Detach what an lb-user left attached to an interface (it stays
    /// attached and forwarding after lb-user is killed): removes the pinned
    /// link and maps. A running lb-user on the interface is stopped first.
    Detach {
        /// Interface the program is attached to.
        #[arg(long, value_name = "IFACE")]
        iface: String,
    },
    /// Print the counters of an attached program: traffic classes, actions
    /// and drop reasons, and per-VIP and per-backend packets, bytes, new flows.
    Stats {
        /// Interface the program is attached to.
        #[arg(long, value_name = "IFACE")]
        iface: String,
        /// Print JSON instead of a table (with --watch: one object per line).
        #[arg(long)]
        json: bool,
        /// Redraw every interval with per-second rates, until Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// Time between reads with --watch: a duration (500ms, 2s) or seconds.
        #[arg(long, value_name = "DURATION", default_value = "1s", requires = "watch", value_parser = lb_user::stats::parse_interval)]
        interval: std::time::Duration,
    },
    /// Show or change the backends of a running `lb-user attach` through its
    /// control API (the config's `api:` block; docs/operations.md). Changes
    /// last until the config file changes.
    Backends {
        #[command(flatten)]
        api: lb_user::cli::ApiArgs,
        #[command(subcommand)]
        command: lb_user::cli::backends::BackendsCommand,
    },
    /// One line per backend of a running `lb-user attach`: health check
    /// verdict and drain state (through the control API).
    Health {
        #[command(flatten)]
        api: lb_user::cli::ApiArgs,
    },
    /// Run the userspace L4 forwarder (the baseline for XDP; docs/proxy.md):
    /// serve the config's VIPs with the same selection, allowlist and health
    /// checks, in the foreground. SIGINT/SIGTERM drain and exit. No root needed.
    Proxy {
        /// Balancer config file (YAML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A config file that cannot be read or is invalid exits 78, so
            // a supervisor can tell it from a failure it may retry.
            let code = if err.chain().any(|c| c.is::<lb_user::config::ConfigError>()) {
                Exit::Config
            } else if err.chain().any(|c| c.is::<lb_user::api::client::NotListening>()) {
                // No lb-user to talk to: a script may start one and retry.
                Exit::Unavailable
            } else {
                Exit::Runtime
            };
            report::exit("lb-user", err.as_ref(), code)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Some(name) = &cli.netns {
        netns::enter(name)?;
    }
    match cli.command {
        Command::Attach { iface, config, mode } => attach(iface, config, mode),
        Command::Detach { iface } => lb_user::attach::detach_pinned(&iface),
        Command::Proxy { config } => lb_user::proxy::run_cli(&config),
        Command::Backends { api, command } => lb_user::cli::backends::run(&api, command),
        Command::Health { api } => lb_user::cli::backends::health(&api),
        Command::Stats { iface, json, watch: true, interval } => lb_user::stats::watch(&iface, interval, json),
        Command::Stats { iface, json, .. } => {
            let report = Report::read_pinned(&iface)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report.to_json())?);
            } else {
                print!("{}", report.to_table());
            }
            Ok(())
        }
    }
}

fn attach(iface: Option<String>, config: Option<PathBuf>, mode: Option<AttachMode>) -> Result<()> {
    let mut neighbours = Neighbours::new();
    // Watched from before the read: an edit that lands while attaching is
    // reloaded, not lost.
    let config = config.map(ConfigFile::new);
    let attachment = match (iface, &config) {
        (Some(iface), _) => Attachment::attach(&iface, mode.unwrap_or_default())?,
        (None, Some(file)) => {
            let config = Config::from_file(file.path())?;
            let start = neighbours.settle(&config, neighbours::SETTLE)?;
            Attachment::attach_config(&config, mode.unwrap_or(config.attach_mode), &start)?
        }
        (None, None) => anyhow::bail!("give --iface or --config"),
    };
    let ready = format!("xdplb attached to {}; press Ctrl-C to detach", attachment.ifaces().join(", "));
    lb_user::supervisor::run_until_signalled(attachment, config, neighbours, || println!("{ready}"))
}

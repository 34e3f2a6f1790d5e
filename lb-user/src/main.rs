//! `lb-user`: the xdplb control-plane CLI.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use lb_user::{config::Config, health::HealthChecker, netns, stats::Report, AttachMode, Attachment};

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
        /// Seconds between reads with --watch (fractions allowed).
        #[arg(long, value_name = "SECS", default_value = "1", requires = "watch", value_parser = lb_user::stats::parse_interval)]
        interval: std::time::Duration,
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
        Command::Attach { iface, config, mode } => attach(iface, config, mode),
        Command::Detach { iface } => lb_user::attach::detach_pinned(&iface),
        Command::Proxy { config } => lb_user::proxy::run_cli(&config),
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
    // SIGINT/SIGTERM stop (detach); SIGHUP reloads. signal-hook rather than
    // ctrlc, whose termination feature would treat SIGHUP as a stop too.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing the SIGINT/SIGTERM handler")?;
    }
    let mut attachment = match (iface, &config) {
        (Some(iface), _) => Attachment::attach(&iface, mode.unwrap_or_default())?,
        (None, Some(path)) => {
            let config = Config::from_file(path)?;
            Attachment::attach_config(&config, mode.unwrap_or(config.attach_mode))?
        }
        (None, None) => anyhow::bail!("give --iface or --config"),
    };
    let ifaces = attachment.ifaces().to_vec();
    println!("xdplb attached to {}; press Ctrl-C to detach", ifaces.join(", "));
    // Health checks run on a small tokio runtime beside this loop; their
    // verdicts rebuild the tables.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the health-check runtime")?;
    // Prometheus: the BPF counters and health gauges, read from the pins on
    // every scrape.
    let _exporter = match attachment.config().and_then(|c| c.metrics.as_ref()) {
        Some(metrics) => {
            let exporter = lb_user::exporter::spawn(metrics.listen, ifaces[0].clone())?;
            log::info!("metrics on http://{}/metrics", exporter.local_addr());
            Some(exporter)
        }
        None => None,
    };
    let mut health = attachment.config().map(|c| {
        let _guard = runtime.enter();
        HealthChecker::spawn(c)
    });
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone()).context("installing the SIGHUP handler")?;
    let mut seen = config.as_deref().and_then(modified);
    // Wake up now and then: reload on SIGHUP or when the file changes, and
    // notice a vanished interface.
    loop {
        for _ in 0..10 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if let Some(gone) = ifaces.iter().find(|i| lb_user::attach::interface_index(i).is_err()) {
            log::warn!("interface {gone} disappeared; detaching");
            break;
        }
        if let Some((_, verdicts)) = health.as_mut() {
            if verdicts.has_changed().unwrap_or(false) {
                let snapshot = verdicts.borrow_and_update().clone();
                match attachment.set_health(&snapshot) {
                    Ok(()) => log::info!("tables rebuilt after a health change"),
                    Err(err) => log::error!("rebuilding tables after a health change: {err:#}"),
                }
            }
        }
        let Some(path) = config.as_deref() else { continue };
        let now = modified(path);
        let signalled = hup.swap(false, Ordering::SeqCst);
        if !signalled && now == seen {
            continue;
        }
        seen = now;
        let why = if signalled { "SIGHUP" } else { "file changed" };
        match Config::from_file(path).map_err(anyhow::Error::from).and_then(|c| attachment.reload(&c).map(|()| c)) {
            Ok(c) => {
                log::info!("reload applied ({why}): {}", path.display());
                // Restart the health checks for the new backend set.
                drop(health.take());
                let _guard = runtime.enter();
                health = Some(HealthChecker::spawn(&c));
            }
            Err(err) => log::error!("reload refused ({why}), previous config stays in force: {err:#}"),
        }
    }
    attachment.detach()
}

/// Modification time of the config file (None when it cannot be read, which
/// the next reload attempt then reports).
fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

//! `alb --config FILE`: a thin wrapper over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use lb_common::report::{self, Exit};
use lb_common::userspace::runtime::Runtimes;
use lb_common::userspace::signals::Signals;
use lb_common::userspace::watch::ConfigFile;

/// The allocator lever (`--features mimalloc`, measured by `cargo xtask bench levers`).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// TLS/mTLS-terminating HTTP load balancer.
///
/// Reads a YAML file (the infra-for-fun ALB format plus extended keys; see
/// docs/alb.md). SIGHUP or a change to the file or its certificates
/// reloads it (a bad file is refused and logged); SIGTERM/SIGINT stop
/// accepting and drain in-flight requests. Logging: RUST_LOG (default
/// info).
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Example:\n  certgen demo --out certs\n  alb --config alb/examples/alb.yaml\n  alb --config app_loadbalancer_config.yaml --check\n\n\
                  Exit status: 0 done, 1 runtime error, 2 usage error, 78 config error (see docs/alb.md)"
)]
struct Cli {
    /// Configuration file (YAML).
    #[arg(short, long, env = "ALB_CONFIG")]
    config: PathBuf,
    /// Validate the file (including certificates) and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err((err, code)) => report::exit("alb", err.as_ref(), code),
    }
}

/// The error and its exit status: [`Exit::Config`] for what the config
/// file says (and, with --check, for the certificate files it names),
/// [`Exit::Runtime`] for everything else.
fn run(cli: &Cli) -> Result<(), (anyhow::Error, Exit)> {
    let config = |e: anyhow::Error| (e, Exit::Config);
    // Watched from before the read: an edit while starting is not lost.
    let file = ConfigFile::new(&cli.config);
    let cfg = alb::Config::load(&cli.config).map_err(|e| config(e.into()))?;
    if cli.check {
        alb::state::State::new(cfg).map_err(config)?;
        println!("{}: OK", cli.config.display());
        return Ok(());
    }
    let runtime = |e: anyhow::Error| {
        let code = if e.chain().any(|c| c.is::<alb::config::ConfigError>()) { Exit::Config } else { Exit::Runtime };
        (e, code)
    };
    let rc = cfg.runtime;
    let rts = Runtimes::start(&rc, "alb").map_err(|e| runtime(anyhow::Error::new(e).context("starting the Tokio runtime")))?;
    log::info!("runtime: {} workers, scheduler {}", rc.workers, rc.scheduler.as_str());
    rts.block_on(async {
        // Before the listeners: from the first "listening on" line, SIGHUP
        // reloads and SIGTERM drains instead of killing.
        let signals = Signals::new().context("installing the signal handlers")?;
        let r = alb::start_on(cfg, Some(file), Some(&rts)).await?;
        alb::run_until_signal(r, signals).await
    })
    .map_err(runtime)
}

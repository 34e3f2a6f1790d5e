//! `alb --config FILE`: a thin wrapper over the library.

use std::path::PathBuf;

use clap::Parser;

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
    after_help = "Example:\n  certgen demo --out certs\n  alb --config alb/examples/alb.yaml\n  alb --config app_loadbalancer_config.yaml --check"
)]
struct Cli {
    /// Configuration file (YAML).
    #[arg(short, long, env = "ALB_CONFIG")]
    config: PathBuf,
    /// Validate the file (including certificates) and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let cfg = alb::Config::load(&cli.config)?;
    if cli.check {
        alb::state::State::new(cfg)?;
        println!("{}: OK", cli.config.display());
        return Ok(());
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let r = alb::start(cfg, Some(cli.config.clone())).await?;
        alb::run_until_signal(r).await
    })
}

//! `lab-backend`: the backend simulator, the HTTP backend the xdplb lab runs
//! in each backend namespace (docs/simulators.md).

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};
use xdplb_tests::backend::{
    knobs::{parse_chaos, parse_idle_timeout},
    Backend, Delay, Settings,
};

/// Serve HTTP (`/` answers the backend's name, `/health`, `/sleep?ms=N`,
/// `/stream?chunks=N&interval_ms=M`, `/status/<code>`) and a UDP echo on the
/// `--listen` addresses, a REQ/ACK line echo on the `--tcp-echo` ones, and
/// the control endpoint (GET /stats, POST /delay /chaos /hang /health
/// /max-conns /idle-timeout) on the `--control` ones.
#[derive(Parser)]
#[command(
    version,
    after_help = "Examples:\n  lab-backend --name be1 --listen 198.18.1.11:8080 --listen '[fd00:198:18:1::11]:8080'\n  lab-backend --name slow --listen 127.0.0.1:8080 --tcp-echo 127.0.0.1:9000 --control 127.0.0.1:9001 --delay 10ms..200ms --max-conns 50 --chaos 5\n  curl -X POST 127.0.0.1:9001/hang -d '{\"enabled\": true}'"
)]
struct Args {
    /// Name returned in every response body and the x-backend header.
    #[arg(long)]
    name: String,
    /// Address to listen on (HTTP over TCP, and UDP echo); repeat for several.
    #[arg(long = "listen", required = true, value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,
    /// Address of the REQ/ACK line echo (`REQ <n>` → `ACK <n>`); repeat for several.
    #[arg(long = "tcp-echo", value_name = "ADDR:PORT")]
    tcp_echo: Vec<SocketAddr>,
    /// Address of the control endpoint; repeat for several.
    #[arg(long = "control", value_name = "ADDR:PORT")]
    control: Vec<SocketAddr>,
    /// Wait before every answer: fixed (`50ms`) or a random range (`10ms..200ms`).
    #[arg(long, default_value = "0s", value_parser = |s: &str| s.parse::<Delay>())]
    delay: Delay,
    /// Connections served at once; beyond it a new one is closed at once and counted (0: unlimited).
    #[arg(long, default_value_t = 0, value_name = "N")]
    max_conns: usize,
    /// Close a connection idle this long (`30s`; `off`: never).
    #[arg(long, default_value = "off", value_parser = |s: &str| parse_idle_timeout(s).map(IdleTimeout), value_name = "DURATION")]
    idle_timeout: IdleTimeout,
    /// Percentage of connections closed right after accept (0..=100).
    #[arg(long, default_value_t = 0, value_parser = |s: &str| s.parse::<u64>().map_err(|_| format!("{s:?} is not a percentage")).and_then(parse_chaos), value_name = "PCT")]
    chaos: u8,
    /// Accept connections and read requests, never answer (until turned off through the control endpoint).
    #[arg(long)]
    hang: bool,
    /// What `/health` answers at start: up (200) or down (503).
    #[arg(long, value_enum, default_value_t = Health::Up)]
    health: Health,
}

/// Not a bare `Option`: clap would read that as "the flag may be absent".
#[derive(Clone, Copy)]
struct IdleTimeout(Option<std::time::Duration>);

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Health {
    Up,
    Down,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let settings = Settings { delay: args.delay, max_conns: args.max_conns, idle_timeout: args.idle_timeout.0, chaos_pct: args.chaos, hang: args.hang };
    let mut builder = Backend::builder(&args.name).udp_echo().settings(settings).healthy(args.health == Health::Up);
    for addr in args.listen {
        builder = builder.listen(addr);
    }
    for addr in args.tcp_echo {
        builder = builder.tcp_echo(addr);
    }
    for addr in args.control {
        builder = builder.control(addr);
    }
    let backend = builder.start()?;
    eprintln!(
        "lab-backend {}: serving HTTP and UDP echo on {:?}, REQ/ACK echo on {:?}, control on {:?}; knobs {}",
        backend.name,
        backend.addrs,
        backend.echo_addrs,
        backend.control_addrs,
        backend.stats_json()["knobs"]
    );
    backend.wait().await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lab-backend: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

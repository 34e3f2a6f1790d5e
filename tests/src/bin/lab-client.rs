//! `lab-client`: the client simulator (docs/simulators.md) over
//! `xdplb_tests::client`: raw-TCP client kinds against the backend
//! simulator's REQ/ACK echo and an https kind against alb, drawn from a
//! weighted mix at a spawn rate for a bounded time; per-kind results live
//! and as JSON at the end.

use std::{io::Write as _, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{bail, Context as _, Result};
use clap::{ArgGroup, Parser};
use lb_common::userspace::duration::parse_duration;
use rustls::pki_types::ServerName;
use xdplb_tests::{
    backend::Delay,
    client::{
        https::{Alpn, HttpsParams},
        kind::{Count, Mix},
        results::Report,
        run,
        tcp::TcpParams,
        tls::{client_config, Identity},
        Plan,
    },
    sys,
};

/// Simulated clients: real (REQ/ACK loop), fire_and_forget, stream, idle and
/// slow against a raw TCP target (lab-backend --tcp-echo), https (HTTP/1.1
/// or h2 over TLS, optional client certificate) against alb. Per-kind
/// started/completed/failed-by-reason counts and latency p50/p99, live and
/// as JSON at the end. Durations: 500ms, 2s, 1m30s; ranges LO..HI are drawn
/// per client.
#[derive(Parser)]
#[command(
    version,
    group(ArgGroup::new("alpn").args(["h2", "h1", "alpn_mix"])),
    after_help = "Examples:\n  lab-client --tcp-target 127.0.0.1:9000 --mix real=1,slow=1 --rate 20 --duration 5s --live\n  lab-client --https-target 198.18.100.2:443 --sni alb.xdplb.test --ca pki/ca.crt --cert pki/client1.crt --key pki/client1.key --mix https=1 --h2 --json out.json\n  lab-client --tcp-target 198.18.100.1:9000 --https-target 198.18.100.2:443 --sni alb.xdplb.test --ca ca.crt --live-json\n\nExit status: 0 when the run completed (failures are counted, not fatal), 2 on a bad flag or file."
)]
struct Args {
    /// Target of the raw-TCP kinds (real, fire_and_forget, stream, idle, slow): a REQ/ACK echo.
    #[arg(long, value_name = "ADDR:PORT")]
    tcp_target: Option<SocketAddr>,
    /// Target of the https kind (alb, or a VIP in front of it).
    #[arg(long, value_name = "ADDR:PORT", requires = "ca")]
    https_target: Option<SocketAddr>,
    /// Name sent as SNI, verified in the server certificate and sent as Host (default: the target's IP).
    #[arg(long, value_name = "NAME")]
    sni: Option<String>,
    /// CA certificate(s) (PEM) that sign the server certificate.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS; needs --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// Client key (PEM); needs --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Offer only h2 in ALPN (a server that does not agree it fails as protocol).
    #[arg(long)]
    h2: bool,
    /// Offer only http/1.1.
    #[arg(long)]
    h1: bool,
    /// Each https client offers only h2 or only http/1.1, half each (default: offer h2,http/1.1).
    #[arg(long)]
    alpn_mix: bool,
    /// Path of the https requests (lab-backend's /echo answers the request's headers and its name as JSON).
    #[arg(long, value_name = "PATH", default_value = "/echo")]
    path: String,
    /// Header of the /echo body that carries the client identity the TLS tier passed on.
    #[arg(long, value_name = "NAME", default_value = "x-client-identity")]
    identity_header: String,
    /// Kind weights; a kind with weight 0, missing, or without its target is off.
    #[arg(long, value_name = "KIND=W,..", default_value = "real=4,fire_and_forget=1,stream=1,idle=1,slow=1,https=4", value_parser = |s: &str| s.parse::<Mix>())]
    mix: Mix,
    /// New clients per second (at most; a slot is skipped while --max-concurrent run).
    #[arg(long, value_name = "N", default_value_t = 50.0)]
    rate: f64,
    /// How long clients are started.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = positive)]
    duration: Duration,
    /// Clients running at once, at most.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_concurrent: u64,
    /// Clients started in all, at most (the run ends once they have ended).
    #[arg(long, value_name = "N", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_total: u64,
    /// After --duration (or Ctrl-C), how long running clients get to end before they are cut (counted as cancelled).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = |s: &str| parse_duration(s))]
    grace: Duration,
    /// Connect, TLS handshake and every answer within this.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = positive)]
    timeout: Duration,
    /// real: REQ/ACK exchanges per client.
    #[arg(long, value_name = "N|LO..HI", default_value = "1..10", value_parser = |s: &str| s.parse::<Count>())]
    iterations: Count,
    /// real: pause between two exchanges.
    #[arg(long, value_name = "D|LO..HI", default_value = "10ms..100ms", value_parser = delay)]
    think: Delay,
    /// stream: how long a client streams lines.
    #[arg(long, value_name = "D|LO..HI", default_value = "1s..3s", value_parser = delay)]
    stream_for: Delay,
    /// stream: pause between two lines.
    #[arg(long, value_name = "D|LO..HI", default_value = "10ms", value_parser = delay)]
    stream_every: Delay,
    /// idle: how long a client holds its silent connection.
    #[arg(long, value_name = "D|LO..HI", default_value = "2s..5s", value_parser = delay)]
    idle_for: Delay,
    /// slow: pause after each byte.
    #[arg(long, value_name = "D|LO..HI", default_value = "100ms..300ms", value_parser = delay)]
    slow_pause: Delay,
    /// https: requests per connection.
    #[arg(long, value_name = "N|LO..HI", default_value = "1..3", value_parser = |s: &str| s.parse::<Count>())]
    requests: Count,
    /// Print the human table on stderr every second.
    #[arg(long)]
    live: bool,
    /// Print the counters as one JSON object per second on stdout.
    #[arg(long)]
    live_json: bool,
    /// Write the final results JSON here (default: print it on stdout).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

fn positive(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err(format!("{text:?}: must be more than zero"));
    }
    Ok(d)
}

fn delay(text: &str) -> Result<Delay, String> {
    text.parse::<Delay>()
}

/// A usage error (exit status 2) rather than a failure of the run.
struct Usage(anyhow::Error);

fn plan(args: &Args) -> Result<Plan> {
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 100_000.0) {
        bail!("--rate {}: must be a number of clients per second above 0 and at most 100000", args.rate);
    }
    if !args.path.starts_with('/') {
        bail!("--path {:?}: must start with /", args.path);
    }
    let tcp = args.tcp_target.map(|target| TcpParams {
        target,
        timeout: args.timeout,
        iterations: args.iterations,
        think: args.think,
        stream_for: args.stream_for,
        stream_every: args.stream_every,
        idle_for: args.idle_for,
        slow_pause: args.slow_pause,
    });
    let https = match args.https_target {
        None => None,
        Some(target) => {
            let ca = args.ca.as_deref().context("--https-target needs --ca")?;
            let identity = args.cert.as_deref().zip(args.key.as_deref()).map(|(cert, key)| Identity { cert, key });
            let config = client_config(ca, identity, &[])?;
            let name = args.sni.clone().unwrap_or_else(|| target.ip().to_string());
            let server_name = ServerName::try_from(name.clone()).with_context(|| format!("--sni {name:?} is not a DNS name or IP address"))?;
            let [both, h2, h1] = HttpsParams::connectors(&config);
            let alpn = if args.h2 {
                Alpn::H2
            } else if args.h1 {
                Alpn::H1
            } else if args.alpn_mix {
                Alpn::Mix
            } else {
                Alpn::Both
            };
            Some(HttpsParams {
                target,
                server_name,
                alpn,
                path: args.path.clone(),
                requests: args.requests,
                identity_header: args.identity_header.to_ascii_lowercase(),
                timeout: args.timeout,
                both,
                h2,
                h1,
            })
        }
    };
    if args.https_target.is_none() && (args.sni.is_some() || args.cert.is_some() || args.h2 || args.h1 || args.alpn_mix) {
        bail!("--sni, --cert, --key, --h2, --h1 and --alpn-mix apply to the https kind: give --https-target");
    }
    Ok(Plan {
        mix: args.mix.clone(),
        rate: args.rate,
        duration: args.duration,
        max_concurrent: args.max_concurrent as usize,
        max_total: args.max_total,
        grace: args.grace,
        tcp,
        https,
    })
}

/// Stdout lines; a reader that went away is no reason to stop a bounded run.
fn print(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

async fn main_async(args: Args) -> Result<(), Usage> {
    let plan = plan(&args).map_err(Usage)?;
    let mix = plan.effective_mix().map_err(Usage)?;
    // Open the results file first: a bad path fails before the run, not after it.
    let json_file = match &args.json {
        Some(path) => Some((std::fs::File::create(path).with_context(|| format!("--json {}: cannot create the file", path.display())).map_err(Usage)?, path)),
        None => None,
    };
    // Sockets at once, plus stdio, the runtime's and slack.
    sys::raise_nofile(args.max_concurrent + 64).map_err(|e| Usage(e.context(format!("--max-concurrent {}", args.max_concurrent))))?;
    let off: Vec<String> = args.mix.kinds().into_iter().filter(|k| !mix.kinds().contains(k)).map(|k| k.to_string()).collect();
    eprintln!(
        "lab-client: mix {mix}{} against tcp {} https {}; {} clients/s for {}, at most {} at once and {} in all",
        if off.is_empty() { String::new() } else { format!(" ({} off: no target)", off.join(", ")) },
        args.tcp_target.map_or("-".into(), |a| a.to_string()),
        args.https_target.map_or("-".into(), |a| a.to_string()),
        args.rate,
        lb_common::userspace::duration::show(args.duration),
        args.max_concurrent,
        args.max_total,
    );
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            Some(()) = async { term.as_mut()?.recv().await } => {}
        }
        eprintln!("lab-client: stopping (signal); running clients get the grace period");
    };
    let (live, live_json) = (args.live, args.live_json);
    let tick = move |r: &Report| {
        if live {
            eprint!("{}", r.table());
        }
        if live_json {
            print(&r.to_json());
        }
    };
    let report = run(plan, stop, tick).await.map_err(Usage)?;
    eprint!("{}", report.table());
    match json_file {
        Some((mut file, path)) => {
            writeln!(file, "{}", report.to_json()).with_context(|| format!("--json {}: writing the results", path.display())).map_err(Usage)?;
        }
        None => print(&report.to_json()),
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // One thread: the simulator's own CPU stays easy to tell apart from the
    // balancers' it loads.
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lab-client: error: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(main_async(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(Usage(e)) => {
            eprintln!("lab-client: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

//! `lab-backend`: the HTTP backend the xdplb lab runs in each backend namespace.

use std::net::SocketAddr;

use clap::Parser;

/// Serve HTTP (`/` answers the backend's name, `/health` answers 200) and a
/// UDP echo on the given addresses.
#[derive(Parser)]
#[command(version, after_help = "Example:\n  lab-backend --name be1 --listen 198.18.1.11:8080 --listen '[fd00:198:18:1::11]:8080'")]
struct Args {
    /// Name returned in every response body and the x-backend header.
    #[arg(long)]
    name: String,
    /// Address to listen on (TCP and UDP); repeat for several.
    #[arg(long = "listen", required = true, value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match xdplb_tests::backend::run(&args.name, &args.listen).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lab-backend: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

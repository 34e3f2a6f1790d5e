//! `bench-uring-proxy`: the io_uring lever of `cargo xtask bench levers`,
//! an experimental L4 TCP forwarder whose socket I/O goes through io_uring
//! (tokio-uring) instead of epoll readiness plus read/write syscalls.
//!
//! Usage: `bench-uring-proxy --listen IP:PORT --backend IP:PORT`. Prints
//! `ready` on stdout once listening; SIGTERM makes it exit with status 0.
//! Per accepted connection it connects to the backend and copies both ways,
//! each direction with one reused buffer; a side's EOF becomes a write
//! shutdown of the other side (half-close), an error closes both.
//!
//! One thread on purpose: the lever compares it with lb-user's proxy on one
//! worker, so the difference is the I/O interface, not the thread count.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr};
use std::process::ExitCode;
use std::rc::Rc;

use anyhow::{Context, Result};
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::{TcpListener, TcpStream};

/// Bytes per read: large enough that a bulk transfer needs few submissions.
const BUF: usize = 64 * 1024;

#[derive(Parser, Debug)]
#[command(name = "bench-uring-proxy", about = "Experimental L4 TCP forwarder on io_uring (bench levers)")]
struct Args {
    /// Address to listen on (IP:PORT).
    #[arg(long)]
    listen: SocketAddr,
    /// Address of the backend every connection is forwarded to (IP:PORT).
    #[arg(long)]
    backend: SocketAddr,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-uring-proxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the forwarder until SIGTERM (or until setting up fails).
fn serve(args: &Args) -> Result<()> {
    // tokio_uring::start panics when the ring cannot be created (e.g. a
    // kernel or sandbox that forbids io_uring); check first for a clear error.
    io_uring_available()?;
    tokio_uring::start(async {
        // Registered before "ready" so a SIGTERM right after it is not lost.
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let listener = TcpListener::bind(args.listen).with_context(|| format!("listening on {} (--listen)", args.listen))?;
        let mut out = io::stdout().lock();
        writeln!(out, "ready").and_then(|()| out.flush()).context("writing `ready` to stdout")?;
        drop(out);
        let backend = args.backend;
        loop {
            tokio::select! {
                _ = term.recv() => return Ok(()),
                accepted = listener.accept() => match accepted {
                    Ok((client, _)) => {
                        tokio_uring::spawn(forward(client, backend));
                    }
                    // E.g. EMFILE under load: that connection is lost, the
                    // listener stays usable.
                    Err(e) => eprintln!("bench-uring-proxy: accept on {}: {e}", args.listen),
                },
            }
        }
    })
}

/// Whether this process may create an io_uring instance.
fn io_uring_available() -> Result<()> {
    tokio_uring::uring_builder()
        .build(8)
        .map(drop)
        .context("creating an io_uring instance (kernel without io_uring, or io_uring disabled by kernel.io_uring_disabled or a seccomp filter)")
}

/// One client connection: connect to the backend, then copy both ways.
async fn forward(client: TcpStream, backend: SocketAddr) {
    let server = match TcpStream::connect(backend).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench-uring-proxy: connecting to backend {backend}: {e}");
            return;
        }
    };
    let (client, server) = (Rc::new(client), Rc::new(server));
    // try_join: the first error drops the other direction too, and with it
    // the last references, which closes both sockets.
    if let Err(e) = tokio::try_join!(copy(client.clone(), server.clone()), copy(server, client)) {
        // A reset peer is ordinary for a proxy; anything else is worth a line.
        if !matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) {
            eprintln!("bench-uring-proxy: forwarding: {e}");
        }
    }
}

/// Copies `from` to `to` until EOF, then shuts down `to`'s write side so the
/// other peer sees the EOF while the opposite direction keeps flowing.
async fn copy(from: Rc<TcpStream>, to: Rc<TcpStream>) -> io::Result<()> {
    // Owned buffer: io_uring holds it while the kernel works, so it moves
    // into each operation and comes back with the result.
    let mut buf = Vec::with_capacity(BUF);
    loop {
        buf.clear();
        let (read, b) = from.read(buf).await;
        let n = read?;
        if n == 0 {
            return to.shutdown(Shutdown::Write);
        }
        let (written, b) = to.write_all(b.slice(..n)).await;
        written?;
        buf = b.into_inner();
    }
}

#[cfg(test)]
mod tests {
    //! The forwarder in a child process: the test binary re-runs itself with
    //! only `child_forwarder` selected and the addresses in the environment,
    //! so the child runs the same `serve` as the example and can be sent a
    //! real SIGTERM. Loopback only, no root.

    use super::*;
    use std::io::{BufRead, BufReader, Read};
    use std::net::{TcpListener as StdListener, TcpStream as StdStream};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    const ENV_LISTEN: &str = "BENCH_URING_PROXY_TEST_LISTEN";
    const ENV_BACKEND: &str = "BENCH_URING_PROXY_TEST_BACKEND";

    /// Only does something in the child started by
    /// `forwards_both_ways_with_half_close`.
    #[test]
    fn child_forwarder() {
        let (Ok(listen), Ok(backend)) = (std::env::var(ENV_LISTEN), std::env::var(ENV_BACKEND)) else {
            return;
        };
        let args = Args::try_parse_from(["bench-uring-proxy", "--listen", &listen, "--backend", &backend]).unwrap();
        serve(&args).unwrap();
    }

    /// Echo backend for one connection: reads to EOF, then answers with
    /// `got N:` and the bytes reversed, then closes. It can only answer once
    /// the client's half-close has been forwarded.
    fn echo_backend() -> (SocketAddr, std::thread::JoinHandle<()>) {
        let l = StdListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            let mut answer = format!("got {}:", got.len()).into_bytes();
            answer.extend(got.iter().rev());
            s.write_all(&answer).unwrap();
        });
        (addr, t)
    }

    /// Kills and reaps the forwarder when the test panics, so a failure
    /// leaves no process behind (and no open pipe for cargo to wait on).
    struct Reap(std::process::Child);

    impl Drop for Reap {
        fn drop(&mut self) {
            if let Ok(None) = self.0.try_wait() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }

    fn free_port() -> SocketAddr {
        StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
    }

    #[test]
    fn forwards_both_ways_with_half_close() {
        if let Err(e) = io_uring_available() {
            eprintln!("SKIP: {e:#}");
            return;
        }
        let (backend, echo) = echo_backend();
        let listen = free_port();
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "tests::child_forwarder", "--nocapture", "--test-threads=1"])
            .env(ENV_LISTEN, listen.to_string())
            .env(ENV_BACKEND, backend.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = Reap(child);
        // The harness prints its own text first, on the same line as ours
        // (`test tests::child_forwarder ... ready`); ends at the child's EOF.
        let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
        let ready = lines.by_ref().map_while(|l| l.ok()).any(|l| l.ends_with("ready"));
        assert!(ready, "the forwarder did not print `ready`");

        // More than one buffer, so the copy loop reuses its buffer.
        let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut c = StdStream::connect(listen).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(&sent).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        // Still readable after our half-close: the answer comes back, then
        // the backend's EOF.
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        let mut want = format!("got {}:", sent.len()).into_bytes();
        want.extend(sent.iter().rev());
        assert!(back == want, "answer of {} bytes differs from the expected {}", back.len(), want.len());
        echo.join().unwrap();

        // SIGTERM: exits cleanly, within a deadline.
        // SAFETY: kill(2) on the pid of our own child.
        assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) }, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.0.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                panic!("the forwarder did not exit within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "the forwarder exited with {status} after SIGTERM");
    }

    #[test]
    fn bad_addresses_are_refused_naming_the_flag() {
        let e = Args::try_parse_from(["bench-uring-proxy", "--listen", "127.0.0.1", "--backend", "127.0.0.1:80"]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("--listen") && msg.contains("127.0.0.1"), "{msg}");
        let e = Args::try_parse_from(["bench-uring-proxy", "--listen", "127.0.0.1:1", "--backend", "nowhere:80"]).unwrap_err();
        assert!(e.to_string().contains("--backend"), "{e}");
    }

    #[test]
    fn listen_address_in_use_is_a_clear_error() {
        if let Err(e) = io_uring_available() {
            eprintln!("SKIP: {e:#}");
            return;
        }
        let taken = StdListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let args = Args { listen: addr, backend: addr };
        let msg = format!("{:#}", serve(&args).unwrap_err());
        assert!(msg.contains(&format!("listening on {addr} (--listen)")), "{msg}");
    }
}

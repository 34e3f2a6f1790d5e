//! The five raw-TCP kinds of the L4-Proxy-LB seed, speaking the backend
//! simulator's REQ/ACK line protocol (`crate::backend`'s `--tcp-echo`):
//!
//! - `real`: `REQ i` → `ACK i`, a random number of times, thinking between;
//!   a latency sample per exchange.
//! - `fire_and_forget`: `PING`, then close without reading; the sample is
//!   connect + write.
//! - `stream`: `REQ i` lines at a steady pace for a random time without
//!   waiting for answers, the ACKs read as they come (a sample per line);
//!   then half-close and wait for every ACK.
//! - `idle`: connect and send nothing for a random time (the sample is the
//!   connect); a close by the other side ends it early (`closed_by_peer`).
//! - `slow`: one `REQ` line one byte at a time with a pause after each
//!   byte, then its ACK; the sample is first byte → ACK.

use std::{collections::VecDeque, net::SocketAddr, sync::Mutex, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::TcpStream,
    time::Instant,
};

use super::{
    kind::{Count, Kind},
    net::{connect, expect, io_failure, read_line},
    results::{Client, Failure, Reason},
};
use crate::backend::Delay;

/// How the raw-TCP kinds behave (the `lab-client` flags of the same names).
#[derive(Clone, Debug)]
pub struct TcpParams {
    pub target: SocketAddr,
    /// Connect, and every answer, within this.
    pub timeout: Duration,
    /// `real`: exchanges per client.
    pub iterations: Count,
    /// `real`: pause between two exchanges.
    pub think: Delay,
    /// `stream`: how long a client streams, and the pause between two lines.
    pub stream_for: Delay,
    pub stream_every: Delay,
    /// `idle`: how long a client holds its silent connection.
    pub idle_for: Delay,
    /// `slow`: the pause after each byte.
    pub slow_pause: Delay,
}

/// Runs one client of a raw-TCP `kind` to its end and records it.
pub(super) async fn run(p: &TcpParams, client: Client) {
    let result = match client.kind() {
        Kind::Real => real(p, &client).await,
        Kind::FireAndForget => fire_and_forget(p, &client).await,
        Kind::Stream => stream(p, &client).await,
        Kind::Idle => idle(p, &client).await,
        Kind::Slow => slow(p, &client).await,
        Kind::Https => unreachable!("https is not a raw-TCP kind"),
    };
    match result {
        Ok(()) => client.complete(),
        Err(f) => client.fail(f),
    }
}

async fn write(tcp: &mut (impl tokio::io::AsyncWrite + Unpin), bytes: &[u8], client: &Client, what: &str) -> Result<(), Failure> {
    tcp.write_all(bytes).await.map_err(|e| io_failure(what, &e))?;
    client.sent(bytes.len());
    Ok(())
}

async fn real(p: &TcpParams, client: &Client) -> Result<(), Failure> {
    let mut conn = BufReader::new(connect(p.target, p.timeout).await?);
    let n = p.iterations.pick(&mut fastrand::Rng::new());
    for i in 1..=n {
        if i > 1 {
            tokio::time::sleep(p.think.pick()).await;
        }
        let what = format!("REQ {i} of {n}");
        let sent = Instant::now();
        write(conn.get_mut(), format!("REQ {i}\n").as_bytes(), client, &what).await?;
        let answer = read_line(&mut conn, p.timeout, &what).await?;
        expect(&answer, &format!("ACK {i}"), &what)?;
        client.latency(sent.elapsed());
        client.exchange();
    }
    let _ = conn.get_mut().shutdown().await;
    Ok(())
}

async fn fire_and_forget(p: &TcpParams, client: &Client) -> Result<(), Failure> {
    let started = Instant::now();
    let mut tcp = connect(p.target, p.timeout).await?;
    write(&mut tcp, b"PING\n", client, "PING").await?;
    client.latency(started.elapsed());
    // Dropped unread: the PONG, if it comes, finds the socket gone.
    Ok(())
}

async fn stream(p: &TcpParams, client: &Client) -> Result<(), Failure> {
    let tcp = connect(p.target, p.timeout).await?;
    let (read, mut write_half) = tcp.into_split();
    let mut read = BufReader::new(read);
    // Send times of the lines not answered yet (answers keep their order),
    // and whether the writer is done; the two halves run side by side in
    // this one task.
    let pending: Mutex<(VecDeque<(u64, Instant)>, bool)> = Mutex::new((VecDeque::new(), false));
    let writer = async {
        let until = Instant::now() + p.stream_for.pick();
        let mut n = 1u64;
        while Instant::now() < until {
            pending.lock().unwrap().0.push_back((n, Instant::now()));
            let what = format!("streamed REQ {n}");
            if let Err(f) = write(&mut write_half, format!("REQ {n}\n").as_bytes(), client, &what).await {
                pending.lock().unwrap().1 = true;
                return Err(f);
            }
            n += 1;
            tokio::time::sleep(p.stream_every.pick()).await;
        }
        let _ = write_half.shutdown().await;
        pending.lock().unwrap().1 = true;
        Ok(())
    };
    let reader = async {
        loop {
            let answer = match read_line(&mut read, p.timeout, "stream ACK").await {
                Ok(answer) => answer,
                Err(f) => {
                    let (queue, done) = &*pending.lock().unwrap();
                    match f.reason {
                        // Every line answered: the close (or silence) after
                        // the half-close is the stream's normal end.
                        _ if *done && queue.is_empty() => return Ok(()),
                        // Nothing awaited yet (a long pause between lines): keep listening.
                        Reason::Timeout if queue.is_empty() && !*done => continue,
                        _ => return Err(f),
                    }
                }
            };
            let Some((n, sent)) = pending.lock().unwrap().0.pop_front() else {
                return Err(Failure::new(Reason::Protocol, format!("stream: an answer {answer:?} to no line")));
            };
            expect(&answer, &format!("ACK {n}"), "stream ACK")?;
            client.latency(sent.elapsed());
            client.exchange();
        }
    };
    tokio::try_join!(writer, reader).map(|_| ())
}

async fn idle(p: &TcpParams, client: &Client) -> Result<(), Failure> {
    let started = Instant::now();
    let mut tcp = connect(p.target, p.timeout).await?;
    client.latency(started.elapsed());
    let mut buf = [0u8; 64];
    match tokio::time::timeout(p.idle_for.pick(), tcp.read(&mut buf)).await {
        Err(_) => Ok(()),
        Ok(Ok(0)) => {
            client.closed_by_peer();
            Ok(())
        }
        Ok(Ok(n)) => Err(Failure::new(Reason::Protocol, format!("idle: the other side sent {n} bytes to a client that sent nothing"))),
        Ok(Err(e)) => Err(io_failure("idle", &e)),
    }
}

async fn slow(p: &TcpParams, client: &Client) -> Result<(), Failure> {
    let mut conn: BufReader<TcpStream> = BufReader::new(connect(p.target, p.timeout).await?);
    let line = b"REQ 1\n";
    let started = Instant::now();
    for (i, byte) in line.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(p.slow_pause.pick()).await;
        }
        write(conn.get_mut(), std::slice::from_ref(byte), client, &format!("slow byte {} of {}", i + 1, line.len())).await?;
    }
    let answer = read_line(&mut conn, p.timeout, "slow REQ 1").await?;
    expect(&answer, "ACK 1", "slow REQ 1")?;
    client.latency(started.elapsed());
    client.exchange();
    let _ = conn.get_mut().shutdown().await;
    Ok(())
}

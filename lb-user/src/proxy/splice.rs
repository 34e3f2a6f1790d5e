//! `proxy.copy: splice`: a TCP connection's bytes move socket → pipe →
//! socket with splice(2), so they are never copied into userspace. One pipe
//! per direction; the sockets' readiness comes from Tokio (`async_io`), so a
//! splice is only tried when the socket said it can make progress.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::Mutex,
};

use prometheus::IntCounter;
use tokio::{io::Interest, net::TcpStream};

/// Bytes asked for per splice from a socket: the default pipe capacity (16
/// pages), so a splice into the (always empty) pipe never stops at the pipe.
const CHUNK: usize = 64 * 1024;

/// Empty pipes kept for the next connections: creating and closing two
/// pipes is six syscalls per connection, which short connections notice.
const POOL_MAX: usize = 256;

static POOL: Mutex<Vec<Pipe>> = Mutex::new(Vec::new());

/// A pipe; the splice path only returns it to [`POOL`] when it is empty.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn take() -> io::Result<Pipe> {
        if let Some(p) = POOL.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(p);
        }
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are new descriptors owned by nobody else.
        Ok(unsafe { Pipe { read: OwnedFd::from_raw_fd(fds[0]), write: OwnedFd::from_raw_fd(fds[1]) } })
    }

    /// Back to the pool; only call with nothing left in the pipe.
    fn give_back(self) {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL_MAX {
            pool.push(self);
        }
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (owned
    // by the caller's streams and pipe); null offsets are required for
    // sockets and pipes. SPLICE_F_NONBLOCK keeps the pipe side from blocking;
    // the sockets are non-blocking already (Tokio).
    let n = unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Moves `from` → `to` until `from` sends FIN, then shuts `to` down for
/// writing (the other direction goes on: half-close). Every byte read from
/// `from` is added to `counter` as it arrives.
async fn one_way(from: &TcpStream, to: &TcpStream, counter: &IntCounter) -> io::Result<()> {
    let pipe = Pipe::take()?;
    loop {
        // The pipe is empty here, so EAGAIN can only mean `from` has nothing.
        let n = from.async_io(Interest::READABLE, || splice(from.as_raw_fd(), pipe.write.as_raw_fd(), CHUNK)).await?;
        if n == 0 {
            break;
        }
        counter.inc_by(n as u64);
        let mut pending = n;
        while pending > 0 {
            // The pipe holds `pending` bytes, so EAGAIN can only mean `to` is full.
            let m = to.async_io(Interest::WRITABLE, || splice(pipe.read.as_raw_fd(), to.as_raw_fd(), pending)).await?;
            if m == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            pending -= m;
        }
    }
    pipe.give_back();
    // SAFETY: `to` owns the descriptor for the duration of the call.
    if unsafe { libc::shutdown(to.as_raw_fd(), libc::SHUT_WR) } < 0 {
        let e = io::Error::last_os_error();
        // The peer is gone already: nothing left to tell it.
        if e.kind() != io::ErrorKind::NotConnected {
            return Err(e);
        }
    }
    Ok(())
}

/// Both directions at once, until both have seen FIN, or the first error
/// (a reset on either side ends the whole connection, as with the buffered
/// copy).
pub(super) async fn bidirectional(client: &TcpStream, backend: &TcpStream, to_backend: &IntCounter, to_client: &IntCounter) -> io::Result<()> {
    tokio::try_join!(one_way(client, backend, to_backend), one_way(backend, client, to_client)).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    /// A connected pair over loopback: (the end given to `bidirectional`, the far end).
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let far = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (near, _) = l.accept().await.unwrap();
        (near, far)
    }

    #[tokio::test]
    async fn splices_both_ways_counts_and_returns_the_empty_pipes() {
        let ((client, mut c_far), (backend, mut b_far)) = (pair().await, pair().await);
        let (up, down) = (IntCounter::new("up", "up").unwrap(), IntCounter::new("down", "down").unwrap());
        let before = POOL.lock().unwrap().len();
        let relay = tokio::spawn(async move { bidirectional(&client, &backend, &up, &down).await.map(|()| (up.get(), down.get())) });
        let sent: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let expect = sent.clone();
        let writer = tokio::spawn(async move {
            c_far.write_all(&sent).await.unwrap();
            c_far.shutdown().await.unwrap();
            c_far
        });
        let mut got = Vec::new();
        b_far.read_to_end(&mut got).await.unwrap();
        assert!(got == expect, "{} bytes arrived of {}", got.len(), expect.len());
        // The client's half is closed; the answer still goes through.
        b_far.write_all(b"answer").await.unwrap();
        b_far.shutdown().await.unwrap();
        let mut c_far = writer.await.unwrap();
        let mut answer = Vec::new();
        c_far.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"answer");
        assert_eq!(relay.await.unwrap().unwrap(), (300_000, 6));
        assert!(POOL.lock().unwrap().len() >= (before + 2).min(POOL_MAX), "both pipes back in the pool");
    }
}

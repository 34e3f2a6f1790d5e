//! The scale-out tests' client side: long-lived REQ/ACK echo connections
//! to the VIP (the backends' echo servers), and requests on all of them at
//! once.

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

/// One echo connection: its stream with a line reader over it.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(vip: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&vip, Duration::from_millis(500))?;
        Ok(Conn { reader: BufReader::new(stream) })
    }

    pub fn send(&mut self, n: usize) -> std::io::Result<()> {
        self.reader.get_mut().write_all(format!("REQ {n}\n").as_bytes())
    }

    /// Reads the answer to `send(n)`, waiting until `deadline` at most.
    pub fn expect(&mut self, n: usize, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let _ = self.reader.get_ref().set_read_timeout(Some(left));
        let mut line = String::new();
        self.reader.read_line(&mut line).is_ok() && line.trim_end() == format!("ACK {n}")
    }
}

/// One request on every connection (all sent first, then all answers read
/// until one common deadline): how many got their answer.
pub fn round(conns: &mut [Conn], n: usize, limit: Duration) -> usize {
    let sent: Vec<bool> = conns.iter_mut().map(|c| c.send(n).is_ok()).collect();
    let deadline = Instant::now() + limit;
    conns.iter_mut().zip(sent).map(|(c, sent)| sent && c.expect(n, deadline)).filter(|ok| *ok).count()
}

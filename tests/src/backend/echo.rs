//! The REQ/ACK line protocol of the `--tcp-echo` port (what the client
//! simulator's raw-TCP kinds speak; docs/simulators.md). One request per
//! line, `\n` or `\r\n` terminated, each answered with one line:
//!
//! - `REQ <n>` → `ACK <n>` (`<n>` any token without spaces, echoed as is)
//! - `PING` → `PONG`
//! - anything else → `ERR <why>`; the connection stays open
//!
//! A line longer than [`MAX_LINE`] is answered `ERR` and the connection is
//! closed: the server never buffers more than that per connection.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::{conn::Conn, stats::Stats};

pub const MAX_LINE: usize = 1024;

/// The answer to one line (without its terminator).
fn answer(line: &[u8]) -> Result<String, String> {
    let line = std::str::from_utf8(line).map_err(|_| "the line is not UTF-8".to_owned())?;
    match line.split_once(' ') {
        Some(("REQ", n)) if !n.is_empty() && !n.contains(char::is_whitespace) => Ok(format!("ACK {n}")),
        None if line == "PING" => Ok("PONG".to_owned()),
        _ => Err(format!("expected \"REQ <n>\" or \"PING\", got {:?}", line.chars().take(64).collect::<String>())),
    }
}

pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(conn: Conn, io: S) {
    let (read, mut write) = tokio::io::split(io);
    let mut read = BufReader::new(read);
    let mut line = Vec::with_capacity(64);
    loop {
        line.clear();
        let n = match (&mut read).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line).await {
            Ok(n) => n,
            Err(_) => return,
        };
        if n == 0 {
            return;
        }
        let complete = line.last() == Some(&b'\n');
        if !complete && line.len() > MAX_LINE {
            Stats::bump(&conn.shared.stats.echo_errors);
            let _ = write.write_all(format!("ERR line longer than {MAX_LINE} bytes\n").as_bytes()).await;
            return;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        conn.before_answer().await;
        let reply = match answer(text) {
            Ok(ack) => {
                Stats::bump(&conn.shared.stats.echo_lines);
                ack
            }
            Err(why) => {
                Stats::bump(&conn.shared.stats.echo_errors);
                format!("ERR {why}")
            }
        };
        if write.write_all(format!("{reply}\n").as_bytes()).await.is_err() || !complete {
            // !complete: EOF in the middle of a line; it has its answer.
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::answer;

    #[test]
    fn lines_and_answers() {
        assert_eq!(answer(b"REQ 7"), Ok("ACK 7".to_owned()));
        assert_eq!(answer(b"REQ abc-1"), Ok("ACK abc-1".to_owned()));
        assert_eq!(answer(b"PING"), Ok("PONG".to_owned()));
        for bad in [&b"REQ"[..], b"REQ ", b"REQ 1 2", b"ACK 1", b"", b"\xff"] {
            assert!(answer(bad).is_err(), "{bad:?}");
        }
    }
}

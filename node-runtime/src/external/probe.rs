//! The two HTTP calls a node makes to an engine itself: is it ready (a GET
//! of its health path), and vLLM's sleep and wake (a POST). Blocking, on
//! loopback, with a deadline; the status line is all either needs, so no
//! HTTP client with a runtime of its own is pulled onto the node's threads.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The status code of `method path` on `addr`, or why there is none.
///
/// # Errors
/// When nothing answers in `timeout` or the answer is not HTTP.
pub fn status(addr: SocketAddr, method: &str, path: &str, timeout: Duration) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        let n = stream.read(&mut head[read..])?;
        if n == 0 {
            break;
        }
        read += n;
    }
    parse_status(&head[..read])
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "the answer is not HTTP"))
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head.get(..12)?).ok()?;
    let rest = text.strip_prefix("HTTP/1.")?;
    rest.get(2..5)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::io::BufRead;

    use super::*;

    #[test]
    fn status_lines_are_read() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 503 Service Unavailable"), Some(503));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status(b"HTTP/1.1"), None);
    }

    #[test]
    fn a_server_on_loopback_is_asked() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let server = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap_or_else(|e| panic!("{e}"));
            let mut reader = std::io::BufReader::new(conn);
            let mut first = String::new();
            reader.read_line(&mut first).unwrap_or_else(|e| panic!("{e}"));
            // The whole head, so closing does not reset a request still arriving.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let mut conn = reader.into_inner();
            conn.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap_or_else(|e| panic!("{e}"));
            first
        });
        assert_eq!(status(addr, "POST", "/sleep?level=1", Duration::from_secs(5)).ok(), Some(204));
        assert_eq!(server.join().ok().as_deref(), Some("POST /sleep?level=1 HTTP/1.1\r\n"));
        let closed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr());
        let addr = closed.unwrap_or_else(|e| panic!("{e}"));
        assert!(status(addr, "GET", "/health", Duration::from_millis(200)).is_err(), "nobody listens there now");
    }
}

//! TXT lookups for domain verification, behind a trait: the server asks a
//! real DNS server over UDP; tests run the same client against a DNS server
//! of their own on loopback.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

/// How long one TXT query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
const TYPE_TXT: u16 = 16;
const CLASS_IN: u16 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("the DNS server did not answer: {0}")]
    Unreachable(String),
    #[error("the DNS answer could not be read: {0}")]
    Malformed(String),
    #[error("{0:?} is not a name that can be looked up")]
    BadName(String),
}

pub type DnsFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<String>, DnsError>> + Send + 'a>>;

/// Looks up the TXT records of a name.
pub trait TxtResolver: Send + Sync {
    fn txt<'a>(&'a self, name: &'a str) -> DnsFuture<'a>;
}

/// A stub resolver: one UDP query to one DNS server.
pub struct UdpResolver {
    server: SocketAddr,
}

impl UdpResolver {
    pub fn new(server: SocketAddr) -> Self {
        Self { server }
    }

    /// The first `nameserver` of `/etc/resolv.conf`.
    pub fn from_system() -> Option<Self> {
        let conf = std::fs::read_to_string("/etc/resolv.conf").ok()?;
        let ip = conf.lines().find_map(|l| l.trim().strip_prefix("nameserver"))?.trim().parse().ok()?;
        Some(Self::new(SocketAddr::new(ip, 53)))
    }
}

impl TxtResolver for UdpResolver {
    fn txt<'a>(&'a self, name: &'a str) -> DnsFuture<'a> {
        Box::pin(async move {
            let id: u16 = rand::random();
            let query = encode_query(id, name)?;
            let bind = if self.server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let socket = tokio::net::UdpSocket::bind(bind).await.map_err(|e| DnsError::Unreachable(e.to_string()))?;
            socket.send_to(&query, self.server).await.map_err(|e| DnsError::Unreachable(e.to_string()))?;
            let mut buf = vec![0u8; 4096];
            let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
            loop {
                let (n, from) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf))
                    .await
                    .map_err(|_| DnsError::Unreachable(format!("no answer from {} in {QUERY_TIMEOUT:?}", self.server)))?
                    .map_err(|e| DnsError::Unreachable(e.to_string()))?;
                // Answers from elsewhere, or to another query, are not ours.
                if from == self.server && n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                    return decode_txt_answer(&buf[..n]);
                }
            }
        })
    }
}

/// A DNS query for the TXT records of `name`.
///
/// # Errors
/// [`DnsError::BadName`] for an empty label or one over 63 bytes.
pub fn encode_query(id: u16, name: &str) -> Result<Vec<u8>, DnsError> {
    let mut out = Vec::with_capacity(name.len() + 18);
    out.extend_from_slice(&id.to_be_bytes());
    // Recursion desired; one question.
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(DnsError::BadName(name.to_owned()));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&TYPE_TXT.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(out)
}

fn skip_name(msg: &[u8], mut at: usize) -> Result<usize, DnsError> {
    loop {
        let len = *msg.get(at).ok_or_else(|| DnsError::Malformed("name runs past the end".into()))?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xC0 == 0xC0 => return Ok(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

fn u16_at(msg: &[u8], at: usize) -> Result<u16, DnsError> {
    msg.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| DnsError::Malformed("message cut short".into()))
}

/// The TXT strings of a DNS answer (each record's strings joined).
///
/// # Errors
/// [`DnsError::Malformed`] for a message that does not parse.
pub fn decode_txt_answer(msg: &[u8]) -> Result<Vec<String>, DnsError> {
    let questions = u16_at(msg, 4)?;
    let answers = u16_at(msg, 6)?;
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(msg, at)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..answers {
        at = skip_name(msg, at)?;
        let kind = u16_at(msg, at)?;
        let len = usize::from(u16_at(msg, at + 8)?);
        let data =
            msg.get(at + 10..at + 10 + len).ok_or_else(|| DnsError::Malformed("record runs past the end".into()))?;
        at += 10 + len;
        if kind != TYPE_TXT {
            continue;
        }
        let (mut text, mut i) = (String::new(), 0);
        while i < data.len() {
            let n = usize::from(data[i]);
            let piece = data.get(i + 1..i + 1 + n).ok_or_else(|| DnsError::Malformed("TXT string cut short".into()))?;
            text.push_str(&String::from_utf8_lossy(piece));
            i += 1 + n;
        }
        out.push(text);
    }
    Ok(out)
}

/// A DNS answer to `query` holding `records` as TXT records: what the
/// loopback DNS server of the tests sends.
pub fn encode_txt_answer(query: &[u8], records: &[&str]) -> Vec<u8> {
    let question_end = skip_name(query, 12).map_or(query.len(), |e| e + 4).min(query.len());
    let mut out = query[..question_end].to_vec();
    // A response; recursion desired and available.
    out[2] = 0x81;
    out[3] = 0x80;
    out[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
    for record in records {
        // The question's name, by pointer.
        out.extend_from_slice(&[0xC0, 12]);
        out.extend_from_slice(&TYPE_TXT.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&60u32.to_be_bytes());
        let chunks: Vec<&[u8]> = record.as_bytes().chunks(255).collect();
        let len: usize = chunks.iter().map(|c| c.len() + 1).sum();
        out.extend_from_slice(&(len as u16).to_be_bytes());
        for c in chunks {
            out.push(c.len() as u8);
            out.extend_from_slice(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_round_trips_through_the_codec() {
        let q = encode_query(7, "_greenthread-challenge.chat.example.com").unwrap();
        let long = "x".repeat(300);
        let answer = encode_txt_answer(&q, &["token-1", &long]);
        assert_eq!(decode_txt_answer(&answer).unwrap(), vec!["token-1".to_owned(), long]);
        assert!(encode_query(1, "a..b").is_err());
        assert!(decode_txt_answer(&answer[..answer.len() - 3]).is_err());
    }

    #[tokio::test]
    async fn the_udp_resolver_asks_a_real_dns_server() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, from) = server.recv_from(&mut buf).await.unwrap();
            server.send_to(&encode_txt_answer(&buf[..n], &["hello"]), from).await.unwrap();
        });
        let records = UdpResolver::new(addr).txt("example.test").await.unwrap();
        assert_eq!(records, ["hello"]);
    }
}

//! TXT lookups for domain verification, behind a trait, with
//! `hickory-resolver`: every name server the system (or the operator)
//! names, UDP with a TCP fallback for truncated answers, EDNS, and response
//! codes told apart (a name without records is an empty answer, a failing
//! server an error). Nothing is cached: an operator who has just published
//! the record and asks again must see it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

/// How long one TXT query may take, per attempt.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("the DNS server did not answer: {0}")]
    Unreachable(String),
    #[error("{0:?} is not a name that can be looked up")]
    BadName(String),
    #[error("no DNS server is configured: {0}")]
    NoServer(String),
}

pub type DnsFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<String>, DnsError>> + Send + 'a>>;

/// Looks up the TXT records of a name.
pub trait TxtResolver: Send + Sync {
    fn txt<'a>(&'a self, name: &'a str) -> DnsFuture<'a>;
}

/// A resolver asking real DNS servers.
pub struct HickoryResolver {
    resolver: TokioResolver,
}

impl HickoryResolver {
    /// The name servers of the system's configuration (`/etc/resolv.conf`).
    ///
    /// # Errors
    /// [`DnsError::NoServer`] when the system configuration cannot be read.
    pub fn system() -> Result<Self, DnsError> {
        let mut builder = TokioResolver::builder_tokio().map_err(|e| DnsError::NoServer(e.to_string()))?;
        tune(builder.options_mut());
        builder.build().map(|resolver| Self { resolver }).map_err(|e| DnsError::NoServer(e.to_string()))
    }

    /// One name server at `server` (`--dns-server`, and the tests' own).
    ///
    /// # Errors
    /// [`DnsError::NoServer`] when the resolver cannot be built.
    pub fn at(server: SocketAddr) -> Result<Self, DnsError> {
        let mut name_server = NameServerConfig::udp_and_tcp(server.ip());
        for connection in &mut name_server.connections {
            connection.port = server.port();
        }
        let config = ResolverConfig::from_name_servers(vec![name_server]);
        let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        tune(builder.options_mut());
        builder.build().map(|resolver| Self { resolver }).map_err(|e| DnsError::NoServer(e.to_string()))
    }
}

fn tune(options: &mut hickory_resolver::config::ResolverOpts) {
    options.cache_size = 0;
    options.timeout = QUERY_TIMEOUT;
    options.attempts = 2;
    options.edns0 = true;
}

impl TxtResolver for HickoryResolver {
    fn txt<'a>(&'a self, name: &'a str) -> DnsFuture<'a> {
        Box::pin(async move {
            // A fully qualified name: no search domains are tried.
            let fqdn = format!("{}.", name.trim_end_matches('.'));
            match self.resolver.txt_lookup(fqdn.as_str()).await {
                Ok(lookup) => Ok(lookup
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::TXT(txt) => {
                            Some(txt.txt_data.iter().map(|part| String::from_utf8_lossy(part)).collect::<String>())
                        }
                        _ => None,
                    })
                    .collect()),
                Err(e) if is_no_records(&e) => Ok(Vec::new()),
                Err(NetError::Proto(e)) => Err(DnsError::BadName(format!("{name}: {e}"))),
                Err(e) => Err(DnsError::Unreachable(e.to_string())),
            }
        })
    }
}

/// A resolver that could not be built: every lookup says why.
pub struct Unavailable(pub DnsError);

impl TxtResolver for Unavailable {
    fn txt<'a>(&'a self, _name: &'a str) -> DnsFuture<'a> {
        let error = self.0.clone();
        Box::pin(async move { Err(error) })
    }
}

/// Whether the lookup found the name without TXT records, or no such name.
fn is_no_records(e: &NetError) -> bool {
    matches!(e, NetError::Dns(hickory_resolver::net::DnsError::NoRecordsFound(_)))
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::rdata::TXT;
    use hickory_proto::rr::{RData, Record};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A name server on loopback, UDP and TCP on one port: `good.test` has
    /// a TXT record in two parts, `big.test` has one too large for UDP (the
    /// UDP answer is truncated), `broken.test` fails, the rest do not exist.
    async fn name_server() -> SocketAddr {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
        fn answer(query: &Message, over_udp: bool) -> Message {
            let mut response = Message::response(query.metadata.id, query.metadata.op_code);
            response.add_queries(query.queries.iter().cloned());
            let question = &query.queries[0];
            let txt = |parts: Vec<String>| Record::from_rdata(question.name().clone(), 60, RData::TXT(TXT::new(parts)));
            match question.name().to_string().as_str() {
                "good.test." => {
                    response.add_answer(txt(vec!["greenthread-verify=".into(), "abc".into()]));
                }
                "big.test." if over_udp => {
                    response.metadata.truncation = true;
                }
                "big.test." => {
                    response.add_answer(txt(vec!["x".repeat(200); 20]));
                }
                "broken.test." => response.metadata.response_code = ResponseCode::ServFail,
                _ => response.metadata.response_code = ResponseCode::NXDomain,
            }
            response
        }
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                let query = Message::from_vec(&buf[..n]).unwrap();
                let _ = udp.send_to(&answer(&query, true).to_vec().unwrap(), from).await;
            }
        });
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                tokio::spawn(async move {
                    let mut len = [0u8; 2];
                    while stream.read_exact(&mut len).await.is_ok() {
                        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        stream.read_exact(&mut query).await.unwrap();
                        let reply = answer(&Message::from_vec(&query).unwrap(), false).to_vec().unwrap();
                        stream.write_all(&(reply.len() as u16).to_be_bytes()).await.unwrap();
                        stream.write_all(&reply).await.unwrap();
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn txt_records_are_read_and_absences_told_from_failures() {
        let resolver = HickoryResolver::at(name_server().await).unwrap();
        assert_eq!(resolver.txt("good.test").await, Ok(vec!["greenthread-verify=abc".to_owned()]));
        assert_eq!(resolver.txt("missing.test").await, Ok(vec![]), "no such name: no records");
        assert!(matches!(resolver.txt("broken.test").await, Err(DnsError::Unreachable(_))));
    }

    #[tokio::test]
    async fn a_truncated_answer_is_asked_again_over_tcp() {
        let resolver = HickoryResolver::at(name_server().await).unwrap();
        let records = resolver.txt("big.test").await.unwrap();
        assert_eq!(records, vec!["x".repeat(200 * 20)]);
    }
}

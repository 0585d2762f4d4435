//! A real DNS server for tests: a UDP responder on 127.0.0.1:0 answering from a zone the test
//! changes at will (records, TTL, or SERVFAIL for everything), encoded with hickory-proto.

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

#[derive(Default)]
struct Zone {
    records: HashMap<(String, RecordType), Vec<RData>>,
    ttl: u32,
    servfail: bool,
}

/// The responder.
pub struct Dns {
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    /// Queries answered, by type.
    queries: Arc<Mutex<HashMap<RecordType, u64>>>,
    answered: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

fn key(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    if n.ends_with('.') { n } else { format!("{n}.") }
}

fn answer(zone: &Zone, query: &Message) -> Message {
    let mut resp = Message::new();
    resp.set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_authoritative(true)
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true);
    resp.add_queries(query.queries().to_vec());
    if zone.servfail {
        resp.set_response_code(ResponseCode::ServFail);
        return resp;
    }
    for q in query.queries() {
        let name = key(&q.name().to_ascii());
        match zone.records.get(&(name.clone(), q.query_type())) {
            Some(rdatas) => {
                for r in rdatas {
                    resp.add_answer(Record::from_rdata(q.name().clone(), zone.ttl, r.clone()));
                }
            }
            None => {
                let exists = zone.records.keys().any(|(n, _)| *n == name);
                if !exists {
                    resp.set_response_code(ResponseCode::NXDomain);
                }
            }
        }
    }
    resp
}

impl Dns {
    pub async fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind dns");
        let addr = socket.local_addr().expect("addr");
        let zone = Arc::new(Mutex::new(Zone {
            ttl: 1,
            ..Zone::default()
        }));
        let queries = Arc::new(Mutex::new(HashMap::new()));
        let answered = Arc::new(AtomicU64::new(0));
        let task = {
            let (zone, queries, answered) = (zone.clone(), queries.clone(), answered.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                        continue;
                    };
                    let Ok(query) = Message::from_vec(&buf[..n]) else {
                        continue;
                    };
                    for q in query.queries() {
                        *queries
                            .lock()
                            .expect("queries")
                            .entry(q.query_type())
                            .or_insert(0) += 1;
                    }
                    let resp = answer(&zone.lock().expect("zone"), &query);
                    let bytes = resp.to_vec().expect("encode answer");
                    let _ = socket.send_to(&bytes, peer).await;
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        Self {
            addr,
            zone,
            queries,
            answered,
            task,
        }
    }

    /// Sets the A records of `name` (an empty list leaves the name existing without records).
    pub fn set_a(&self, name: &str, ips: &[Ipv4Addr]) {
        let mut z = self.zone.lock().expect("zone");
        z.records.insert(
            (key(name), RecordType::A),
            ips.iter().map(|ip| RData::A(A(*ip))).collect(),
        );
    }

    /// Sets the SRV records of `name`: (priority, weight, port, target).
    pub fn set_srv(&self, name: &str, records: &[(u16, u16, u16, &str)]) {
        let mut z = self.zone.lock().expect("zone");
        z.records.insert(
            (key(name), RecordType::SRV),
            records
                .iter()
                .map(|(p, w, port, t)| {
                    RData::SRV(SRV::new(
                        *p,
                        *w,
                        *port,
                        Name::from_str(&key(t)).expect("name"),
                    ))
                })
                .collect(),
        );
    }

    /// Makes every answer SERVFAIL (or normal again).
    pub fn set_servfail(&self, on: bool) {
        self.zone.lock().expect("zone").servfail = on;
    }

    pub fn set_ttl(&self, ttl: u32) {
        self.zone.lock().expect("zone").ttl = ttl;
    }

    /// Queries of this type received so far.
    pub fn queries(&self, t: RecordType) -> u64 {
        self.queries
            .lock()
            .expect("queries")
            .get(&t)
            .copied()
            .unwrap_or(0)
    }

    /// Messages answered so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::SeqCst)
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

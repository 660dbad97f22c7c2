//! DNS_CHECK: ask the server for `name`/`type` over UDP (recursion
//! desired, as keepalived asks); it passes when a reply with the query's
//! id arrives within `connect_timeout` with RCODE NOERROR. Replies with
//! another id are ignored (a late answer to an earlier attempt); messages
//! are encoded and decoded with `hickory-proto`.

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use super::udp::{connected_udp, udp_reason};
use super::{timeout_reason, Outcome};
use crate::health::spec::{CheckTarget, DnsCheck, DnsType};

pub fn record_type(t: DnsType) -> RecordType {
    match t {
        DnsType::A => RecordType::A,
        DnsType::Ns => RecordType::NS,
        DnsType::Cname => RecordType::CNAME,
        DnsType::Soa => RecordType::SOA,
        DnsType::Mx => RecordType::MX,
        DnsType::Txt => RecordType::TXT,
        DnsType::Aaaa => RecordType::AAAA,
    }
}

/// The query for `dns` with message id `id`.
pub fn query(dns: &DnsCheck, id: u16) -> Result<Vec<u8>, String> {
    let mut name = Name::from_ascii(&dns.name).map_err(|e| format!("bad dns name: {e}"))?;
    name.set_fqdn(true);
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name, record_type(dns.qtype)));
    msg.to_vec().map_err(|e| format!("dns encode: {e}"))
}

pub async fn check(target: &CheckTarget, dns: &DnsCheck) -> Outcome {
    let id = super::random_u64() as u16;
    let request = query(dns, id)?;
    let socket = connected_udp(target)?;
    socket.send(&request).await.map_err(|e| udp_reason(&e))?;
    let limit = target.timing.connect_timeout;
    let wait = async {
        let mut buf = vec![0u8; 65536];
        loop {
            let n = socket.recv(&mut buf).await.map_err(|e| udp_reason(&e))?;
            let Ok(reply) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if reply.metadata.id != id || reply.metadata.message_type != MessageType::Response {
                continue;
            }
            return match reply.metadata.response_code {
                ResponseCode::NoError => Ok(None),
                code => Err(format!("dns rcode {}", rcode_name(code))),
            };
        }
    };
    match tokio::time::timeout(limit, wait).await {
        Ok(r) => r,
        Err(_) => Err(timeout_reason(limit)),
    }
}

/// "SERVFAIL", "NXDOMAIN"... as dig prints them.
fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => u16::from(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_carry_id_name_and_type() {
        let dns = DnsCheck {
            qtype: DnsType::Aaaa,
            name: "www.example".into(),
        };
        let q = query(&dns, 0x1234).unwrap();
        assert_eq!(&q[..2], &[0x12, 0x34]);
        assert_eq!(q[2] & 0x01, 0x01, "RD set");
        let m = Message::from_vec(&q).unwrap();
        assert_eq!(m.queries[0].query_type(), RecordType::AAAA);
        assert_eq!(m.queries[0].name().to_ascii(), "www.example.");
        assert_eq!(rcode_name(ResponseCode::ServFail), "SERVFAIL");
    }
}

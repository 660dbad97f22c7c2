//! sloppy_tcp: a TCP packet without SYN may create a connection
//! ([`crate::lb::defense`]); with `mh`, two directors with the same
//! configuration pick the same real server for a flow, so a backup that
//! takes over mid-connection keeps it on its server.

use super::*;
use crate::lb::defense::DefenseConfig;
use crate::lb::packet::VecPacket;
use crate::lb::service::{RealServerConfig, ServiceConfig, ServiceKey, ServiceTable};
use crate::lb::tcp_state::TcpState;
use crate::wire::{tcp, MacAddr, PacketBuilder};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 7);
const REALS: [Ipv4Addr; 4] = [
    Ipv4Addr::new(198, 18, 1, 11),
    Ipv4Addr::new(198, 18, 1, 12),
    Ipv4Addr::new(198, 18, 1, 13),
    Ipv4Addr::new(198, 18, 1, 14),
];

/// The client of flow `sport`: mh hashes the source address (without
/// the mh-port flag), so each flow gets its own client.
fn client(sport: u16) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(CLIENT) + u32::from(sport % 256))
}

fn packet(sport: u16, flags: u8) -> Vec<u8> {
    PacketBuilder::ethernet(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]))
        .ipv4(client(sport), VIP)
        .tcp(sport, 80, flags)
        .seq(1000)
        .build()
}

/// One director: a DR service with `sched` over four servers, built from
/// scratch each time (as a second director would build it from the same
/// configuration), with its own hash seed.
fn director(sched: &str, seed: u64, sloppy: bool) -> CoreLb {
    let key = ServiceKey::tcp(IpAddr::V4(VIP), 80);
    let mut t = ServiceTable::new(4);
    t.add_service(key, ServiceConfig::with_scheduler(sched))
        .unwrap();
    for rip in REALS {
        t.add_dest(
            &key,
            RealServerConfig::new(IpAddr::V4(rip), 80, FwdMethod::Route),
        )
        .unwrap();
    }
    let cfg = CoreLbConfig {
        conn_capacity: 1024,
        hash_seed: Some(seed),
        ..CoreLbConfig::default()
    };
    let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
    let mut lb = CoreLb::new(cfg, t.snapshot(), global, None, 0).unwrap();
    lb.set_defense(DefenseConfig {
        sloppy_tcp: sloppy,
        ..DefenseConfig::default()
    });
    lb
}

fn send(lb: &mut CoreLb, sport: u16, flags: u8) -> FwdVerdict {
    let mut p = VecPacket::new(&packet(sport, flags));
    lb.process(&mut p, None, 1_000)
}

fn state_of(lb: &CoreLb, sport: u16) -> Option<&'static str> {
    let t = Tuple {
        proto: Protocol::Tcp,
        src: Endpoint::new(u32::from(client(sport)), sport),
        dst: Endpoint::new(u32::from(VIP), 80),
    };
    let (id, _) = lb.conns().peek(&t)?;
    lb.conns().get(id).map(|c| c.state_name())
}

#[test]
fn off_by_default_a_mid_connection_ack_is_dropped_and_counted() {
    let mut lb = director("mh", 1, false);
    assert!(!DefenseConfig::default().sloppy_tcp);
    assert_eq!(
        send(&mut lb, 40000, tcp::ACK),
        FwdVerdict::Drop(FwdDrop::NoConnNotSyn)
    );
    assert_eq!(lb.stats().drop_count(FwdDrop::NoConnNotSyn), 1);
    assert_eq!(lb.conns().len(), 0);
    assert_eq!(lb.stats().event(FwdEvent::SloppyScheduled), 0);
}

#[test]
fn an_ack_on_a_backup_goes_to_the_server_the_master_picked_with_mh() {
    // The master saw the SYNs; the backup (same configuration, another
    // process: another hash seed) sees only later ACKs.
    let mut master = director("mh", 1, true);
    let mut backup = director("mh", 2, true);
    let mut used = std::collections::HashSet::new();
    for sport in 40000..40064u16 {
        let FwdVerdict::Forward {
            next_hop: IpAddr::V4(picked),
        } = send(&mut master, sport, tcp::SYN)
        else {
            panic!("master did not forward the SYN of port {sport}");
        };
        used.insert(picked);
        assert_eq!(
            send(&mut backup, sport, tcp::ACK | tcp::PSH),
            FwdVerdict::Forward {
                next_hop: IpAddr::V4(picked)
            },
            "client port {sport}"
        );
        // from NONE an ACK makes the connection ESTABLISHED, as in the kernel
        assert_eq!(state_of(&backup, sport), Some(TcpState::Established.name()));
    }
    assert!(used.len() > 1, "the flows spread over several servers");
    assert_eq!(backup.stats().event(FwdEvent::SloppyScheduled), 64);
    assert_eq!(backup.conns().len(), 64);
}

#[test]
fn a_rst_never_creates_a_connection() {
    let mut lb = director("mh", 1, true);
    assert_eq!(
        send(&mut lb, 40000, tcp::RST | tcp::ACK),
        FwdVerdict::Drop(FwdDrop::NoConnNotSyn)
    );
    assert_eq!(lb.conns().len(), 0);
}

#[test]
fn a_fin_picked_up_closes_as_in_the_kernel() {
    let mut lb = director("mh", 1, true);
    assert!(matches!(
        send(&mut lb, 40001, tcp::FIN | tcp::ACK),
        FwdVerdict::Forward { .. }
    ));
    // kernel DR (input-only) table: fin from NONE -> CLOSE
    assert_eq!(state_of(&lb, 40001), Some(TcpState::Close.name()));
}

#[test]
fn sloppy_follows_the_published_setting() {
    let mut lb = director("mh", 1, true);
    assert!(matches!(
        send(&mut lb, 40002, tcp::ACK),
        FwdVerdict::Forward { .. }
    ));
    lb.set_defense(DefenseConfig::default());
    assert_eq!(
        send(&mut lb, 40003, tcp::ACK),
        FwdVerdict::Drop(FwdDrop::NoConnNotSyn)
    );
}

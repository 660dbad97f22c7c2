//! IPVS's TCP connection states, its transition tables and the protocol
//! timeouts (`ipvsadm --set` / `--timeout`).
//!
//! IPVS does not track TCP the way an endpoint does: it keeps a coarse state
//! per connection, advanced by the flags of each packet it forwards. There are
//! three tables: INPUT (client to director), OUTPUT (real server replies seen
//! by the director, NAT and FULLNAT) and INPUT-ONLY (DR and TUN, where replies
//! bypass the director, so a client FIN alone must end in FIN_WAIT). The row
//! is picked from the flags with RST first, then SYN, FIN, ACK; a packet with
//! none of them moves the connection to CLOSE. The tables follow the current
//! kernel (`net/netfilter/ipvs/ip_vs_proto_tcp.c`), where an ACK in state NONE
//! goes to ESTABLISHED (older kernels went to CLOSE).
//!
//! The `secure_tcp` defense tables (`tcp_states_dos`) are provided too: they
//! keep half-open connections out of ESTABLISHED while under SYN flood.

use std::fmt;

/// TCP header flag bits as they appear in the 14th byte of the header, so the
/// dataplane can pass that byte unchanged.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH (ignored by the state machine).
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// IPVS TCP connection state, in the kernel's numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TcpState {
    /// Just created, no packet classified yet.
    None = 0,
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait = 4,
    TimeWait = 5,
    Close = 6,
    CloseWait = 7,
    LastAck = 8,
    Listen = 9,
    SynAck = 10,
}

/// Number of TCP states.
pub const TCP_STATE_COUNT: usize = 11;

impl TcpState {
    /// Every state, in kernel order (index = `state as usize`).
    pub const ALL: [TcpState; TCP_STATE_COUNT] = [
        TcpState::None,
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::SynAck,
    ];

    /// State from its kernel number; `None` for an out-of-range value.
    pub fn from_u8(v: u8) -> Option<TcpState> {
        TcpState::ALL.get(v as usize).copied()
    }

    /// Name as `ipvsadm -Lc` prints it (kernel `tcp_state_name_table`).
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::SynAck => "SYNACK",
        }
    }

    /// Whether a connection in this state counts in ActiveConn (else InActConn).
    ///
    /// As Linux 4.8 and later (commit "ipvs: count pre-established TCP
    /// states as active", the kernel's `tcp_state_active_table`):
    /// ESTABLISHED and the half-open SYN_SENT, SYN_RECV and SYNACK, so the
    /// schedulers that weigh active connections (lc, wlc, sed, nq, ovf, ...)
    /// see a burst of SYNs as load instead of sending it all to one server.
    pub fn counts_as_active(self) -> bool {
        matches!(
            self,
            TcpState::Established | TcpState::SynSent | TcpState::SynRecv | TcpState::SynAck
        )
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which transition table a packet is classified with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateDir {
    /// Client to director, replies are also seen (NAT, FULLNAT).
    Input,
    /// Real server reply through the director.
    Output,
    /// Client to director where replies are never seen (DR, TUN).
    InputOnly,
}

/// Row of a table for the packet's flags: RST, then SYN, FIN, ACK.
/// `None` when the packet has none of them.
fn flag_row(flags: u8) -> Option<usize> {
    if flags & tcp_flags::RST != 0 {
        Some(3)
    } else if flags & tcp_flags::SYN != 0 {
        Some(0)
    } else if flags & tcp_flags::FIN != 0 {
        Some(1)
    } else if flags & tcp_flags::ACK != 0 {
        Some(2)
    } else {
        None
    }
}

use TcpState::{
    Close as sCL, CloseWait as sCW, Established as sES, FinWait as sFW, LastAck as sLA,
    Listen as sLI, SynAck as sSA, SynRecv as sSR, SynSent as sSS, TimeWait as sTW,
};

type Table = [[TcpState; TCP_STATE_COUNT]; 4];

// Rows: syn, fin, ack, rst. Columns: current state in kernel order
// (NO ES SS SR FW TW CL CW LA LI SA).
#[rustfmt::skip]
const NORMAL: [Table; 3] = [
    // INPUT
    [
        [sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR],
        [sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sTW],
        [sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES],
        [sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sSR],
    ],
    // OUTPUT
    [
        [sSS, sES, sSS, sSR, sSS, sSS, sSS, sSS, sSS, sLI, sSR],
        [sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW],
        [sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES],
        [sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL],
    ],
    // INPUT-ONLY
    [
        [sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR],
        [sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW],
        [sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES],
        [sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL],
    ],
];

// secure_tcp ("DoS") tables: half-open connections stay out of ESTABLISHED.
#[rustfmt::skip]
const SECURE: [Table; 3] = [
    // INPUT
    [
        [sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSA],
        [sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sSA],
        [sES, sES, sSS, sSR, sFW, sTW, sCL, sCW, sCL, sLI, sSA],
        [sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL],
    ],
    // OUTPUT
    [
        [sSS, sES, sSS, sSA, sSS, sSS, sSS, sSS, sSS, sLI, sSA],
        [sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW],
        [sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES],
        [sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL],
    ],
    // INPUT-ONLY
    [
        [sSA, sES, sES, sSR, sSA, sSA, sSA, sSA, sSA, sSA, sSA],
        [sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW],
        [sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES],
        [sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL],
    ],
];

/// Next state for a packet with `flags` seen in `dir`, from `current`.
/// `secure` selects the secure_tcp tables.
pub fn next_state(secure: bool, dir: StateDir, flags: u8, current: TcpState) -> TcpState {
    let Some(row) = flag_row(flags) else {
        // The kernel moves a connection to CLOSE on a packet without any of
        // SYN, FIN, ACK, RST.
        return TcpState::Close;
    };
    let tables = if secure { &SECURE } else { &NORMAL };
    let t = match dir {
        StateDir::Input => &tables[0],
        StateDir::Output => &tables[1],
        StateDir::InputOnly => &tables[2],
    };
    t[row][current as usize]
}

/// Largest timeout accepted, in seconds: the kernel's `INT_MAX / HZ` at HZ=1000.
pub const MAX_TIMEOUT_S: u32 = (i32::MAX / 1000) as u32;

/// Timeout of a connection just created, before its first packet is
/// classified (kernel `ip_vs_conn_new`: 3 s).
pub const INITIAL_TIMEOUT_S: u32 = 3;

/// Why a timeout change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutError {
    /// Above [`MAX_TIMEOUT_S`].
    TooLarge(u32),
    /// 0 where a timeout is required.
    Zero,
}

impl fmt::Display for TimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeoutError::TooLarge(v) => write!(f, "timeout {v} s exceeds {MAX_TIMEOUT_S} s"),
            TimeoutError::Zero => f.write_str("timeout must be at least 1 s"),
        }
    }
}

impl std::error::Error for TimeoutError {}

/// Per-protocol timeouts in seconds (one copy per connection table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP timeout per state, indexed by `TcpState as usize`.
    pub tcp: [u32; TCP_STATE_COUNT],
    /// UDP ("UDP" state).
    pub udp: u32,
    /// ICMP ("ICMP" state).
    pub icmp: u32,
}

impl Default for Timeouts {
    /// The kernel's defaults.
    fn default() -> Self {
        Timeouts {
            //     NONE EST  SS   SR  FW   TW   CL  CW  LA  LI   SA
            tcp: [2, 900, 120, 60, 120, 120, 10, 60, 30, 120, 120],
            udp: 300,
            icmp: 60,
        }
    }
}

impl Timeouts {
    /// Timeout of a TCP state, seconds.
    pub fn tcp_state(&self, s: TcpState) -> u32 {
        self.tcp[s as usize]
    }

    /// `ipvsadm --set tcp tcpfin udp`: tcp sets ESTABLISHED, tcpfin sets
    /// FIN_WAIT, udp sets UDP; 0 leaves a value unchanged. Nothing changes if
    /// any value is out of range.
    pub fn set(&mut self, tcp: u32, tcpfin: u32, udp: u32) -> Result<(), TimeoutError> {
        for v in [tcp, tcpfin, udp] {
            if v > MAX_TIMEOUT_S {
                return Err(TimeoutError::TooLarge(v));
            }
        }
        if tcp != 0 {
            self.tcp[TcpState::Established as usize] = tcp;
        }
        if tcpfin != 0 {
            self.tcp[TcpState::FinWait as usize] = tcpfin;
        }
        if udp != 0 {
            self.udp = udp;
        }
        Ok(())
    }

    /// Set one TCP state's timeout (vsd's `--set-defense synrecv=SECS`);
    /// 0 is refused (a state must time out after some time).
    pub fn set_state(&mut self, state: TcpState, secs: u32) -> Result<(), TimeoutError> {
        if secs > MAX_TIMEOUT_S {
            return Err(TimeoutError::TooLarge(secs));
        }
        if secs == 0 {
            return Err(TimeoutError::Zero);
        }
        self.tcp[state as usize] = secs;
        Ok(())
    }

    /// What `ipvsadm --timeout` shows: (tcp, tcpfin, udp) in seconds.
    pub fn ipvsadm_triple(&self) -> (u32, u32, u32) {
        (
            self.tcp_state(TcpState::Established),
            self.tcp_state(TcpState::FinWait),
            self.udp,
        )
    }
}

impl fmt::Display for Timeouts {
    /// `ipvsadm --timeout` line: `Timeout (tcp tcpfin udp): 900 120 300`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (t, tf, u) = self.ipvsadm_triple();
        write!(f, "Timeout (tcp tcpfin udp): {t} {tf} {u}")
    }
}

/// Name of the UDP pseudo-state in listings.
pub const UDP_STATE_NAME: &str = "UDP";
/// Name of the ICMP pseudo-state in listings.
pub const ICMP_STATE_NAME: &str = "ICMP";

#[cfg(test)]
mod tests {
    use super::tcp_flags::*;
    use super::*;

    fn run(dir_flags: &[(StateDir, u8)]) -> TcpState {
        dir_flags
            .iter()
            .fold(TcpState::None, |s, &(d, f)| next_state(false, d, f, s))
    }

    #[test]
    fn names_and_defaults_match_kernel() {
        let names: Vec<_> = TcpState::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "NONE",
                "ESTABLISHED",
                "SYN_SENT",
                "SYN_RECV",
                "FIN_WAIT",
                "TIME_WAIT",
                "CLOSE",
                "CLOSE_WAIT",
                "LAST_ACK",
                "LISTEN",
                "SYNACK"
            ]
        );
        let t = Timeouts::default();
        let secs: Vec<_> = TcpState::ALL.iter().map(|&s| t.tcp_state(s)).collect();
        assert_eq!(secs, [2, 900, 120, 60, 120, 120, 10, 60, 30, 120, 120]);
        assert_eq!((t.udp, t.icmp), (300, 60));
        assert_eq!(t.to_string(), "Timeout (tcp tcpfin udp): 900 120 300");
        for (i, s) in TcpState::ALL.iter().enumerate() {
            assert_eq!(TcpState::from_u8(i as u8), Some(*s));
        }
        assert_eq!(TcpState::from_u8(11), None);
    }

    #[test]
    fn set_timeouts_like_ipvsadm() {
        let mut t = Timeouts::default();
        t.set(3600, 0, 30).unwrap();
        assert_eq!(t.ipvsadm_triple(), (3600, 120, 30));
        t.set(0, 45, 0).unwrap();
        assert_eq!(t.ipvsadm_triple(), (3600, 45, 30));
        assert_eq!(
            t.set(1, MAX_TIMEOUT_S + 1, 1),
            Err(TimeoutError::TooLarge(MAX_TIMEOUT_S + 1))
        );
        assert_eq!(t.ipvsadm_triple(), (3600, 45, 30), "unchanged on error");
        t.set(MAX_TIMEOUT_S, 0, 0).unwrap();
        assert_eq!(t.tcp_state(TcpState::Established), 2_147_483);
    }

    #[test]
    fn nat_handshake_and_close() {
        use StateDir::*;
        assert_eq!(run(&[(Input, SYN)]), TcpState::SynRecv);
        assert_eq!(run(&[(Input, SYN), (Output, SYN | ACK)]), TcpState::SynRecv);
        let est = [(Input, SYN), (Output, SYN | ACK), (Input, ACK)];
        assert_eq!(run(&est), TcpState::Established);
        // Client closes first: FIN in -> CLOSE_WAIT, server FIN out -> TIME_WAIT.
        let mut seq = est.to_vec();
        seq.push((Input, FIN | ACK));
        assert_eq!(run(&seq), TcpState::CloseWait);
        seq.push((Output, ACK));
        assert_eq!(run(&seq), TcpState::CloseWait);
        seq.push((Output, FIN | ACK));
        assert_eq!(run(&seq), TcpState::TimeWait);
        seq.push((Input, ACK));
        assert_eq!(run(&seq), TcpState::TimeWait);
        // Server closes first: FIN out -> FIN_WAIT, client FIN in -> TIME_WAIT.
        let mut seq = est.to_vec();
        seq.push((Output, FIN | ACK));
        assert_eq!(run(&seq), TcpState::FinWait);
        seq.push((Input, ACK));
        assert_eq!(run(&seq), TcpState::FinWait);
        seq.push((Input, FIN | ACK));
        assert_eq!(run(&seq), TcpState::TimeWait);
    }

    #[test]
    fn rst_and_flagless_packets() {
        use StateDir::*;
        let est = [(Input, SYN), (Output, SYN | ACK), (Input, ACK)];
        let mut seq = est.to_vec();
        seq.push((Input, RST | ACK));
        assert_eq!(run(&seq), TcpState::Close);
        let mut seq = est.to_vec();
        seq.push((Output, RST));
        assert_eq!(run(&seq), TcpState::Close);
        // RST in SYN_RECV from the client keeps SYN_RECV (kernel table).
        assert_eq!(run(&[(Input, SYN), (Input, RST)]), TcpState::SynRecv);
        // RST has priority over SYN.
        assert_eq!(run(&[(Input, SYN | RST)]), TcpState::Close);
        // No SYN/FIN/ACK/RST at all: CLOSE.
        assert_eq!(run(&[(Input, SYN), (Input, PSH)]), TcpState::Close);
        // ACK out of nowhere (mid-stream pickup) establishes.
        assert_eq!(run(&[(Input, ACK)]), TcpState::Established);
    }

    #[test]
    fn input_only_for_dr_and_tun() {
        use StateDir::*;
        let est = [(InputOnly, SYN), (InputOnly, ACK)];
        assert_eq!(run(&est[..1]), TcpState::SynRecv);
        assert_eq!(run(&est), TcpState::Established);
        let mut seq = est.to_vec();
        seq.push((InputOnly, FIN | ACK));
        assert_eq!(run(&seq), TcpState::FinWait, "INPUT would give CLOSE_WAIT");
        seq.push((InputOnly, ACK));
        assert_eq!(run(&seq), TcpState::FinWait);
        let mut seq = est.to_vec();
        seq.push((InputOnly, RST));
        assert_eq!(run(&seq), TcpState::Close);
        // Difference with INPUT: RST in SYNACK goes to CLOSE, not SYN_RECV.
        assert_eq!(
            next_state(false, InputOnly, RST, TcpState::SynAck),
            TcpState::Close
        );
        assert_eq!(
            next_state(false, Input, RST, TcpState::SynAck),
            TcpState::SynRecv
        );
    }

    #[test]
    fn secure_tables_hold_half_open_in_synack() {
        use StateDir::*;
        assert_eq!(
            next_state(true, InputOnly, SYN, TcpState::None),
            TcpState::SynAck
        );
        assert_eq!(
            next_state(true, Input, ACK, TcpState::SynRecv),
            TcpState::SynRecv
        );
        assert_eq!(
            next_state(true, Output, SYN | ACK, TcpState::SynRecv),
            TcpState::SynAck
        );
        assert_eq!(
            next_state(true, Output, ACK, TcpState::SynAck),
            TcpState::Established
        );
    }
}

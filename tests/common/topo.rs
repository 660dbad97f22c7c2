//! Network topologies for the forwarding tests: a client namespace, real
//! servers in namespaces of their own running real programs, and the wiring
//! for each forwarding method, attached to whatever plays the director (vsd's
//! taps, or a reference director built from plain Linux for validating the
//! topologies themselves).
//!
//! Cleanup: every namespace, process and temporary directory is a guard that
//! removes itself on drop. Drop does not run when the test process is killed
//! (SIGKILL), so each test process also starts a reaper (tests/helpers/
//! reaper.sh) in a session of its own: it waits for the test process to end
//! and then removes whatever the ledger still lists. Child processes get
//! PR_SET_PDEATHSIG, so they die with the test.
//!
//! Addresses (all from 198.18.0.0/15):
//!
//! ```text
//! lan  198.18.0.0/24  director .1, client .2, VIP .100 (DR: real servers .11 .12)
//! srv  198.18.1.0/24  director .1, real servers .11 .12, client's second leg .2 (TUN),
//!                     FULLNAT local address .200
//! ```

use super::{sh, sh_any, unique, wait_for, Netns};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The director's address on the client side.
pub const LAN_DIP: &str = "198.18.0.1";
/// The client.
pub const CLIENT: &str = "198.18.0.2";
/// The virtual IP.
pub const VIP: &str = "198.18.0.100";
/// The director's address on the real-server side.
pub const SRV_DIP: &str = "198.18.1.1";
/// The client's second leg on the real-server network (TUN return path).
pub const CLIENT_SRV_LEG: &str = "198.18.1.2";
/// The FULLNAT local address.
pub const LIP: &str = "198.18.1.200";
/// The real servers on the server network (NAT, TUN, FULLNAT).
pub const RS_SRV: [&str; 2] = ["198.18.1.11", "198.18.1.12"];
/// The real servers on the client network (DR).
pub const RS_LAN: [&str; 2] = ["198.18.0.11", "198.18.0.12"];
/// Fixed MACs of the real servers' interfaces.
pub const RS_MAC: [&str; 2] = ["02:00:00:00:02:11", "02:00:00:00:02:12"];
/// The service ports the client uses.
pub const HTTP_PORT: u16 = 80;
pub const UDP_PORT: u16 = 9000;
/// Size of the download checked by sha256.
pub const BIG_FILE_BYTES: usize = 50 << 20;
/// Size of the upload checked by sha256 (client to real server: through
/// the director with every method; for TUN it needs path MTU discovery).
pub const UPLOAD_BYTES: usize = 8 << 20;

/// Forwarding methods under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Nat,
    Dr,
    Tun,
    FullNat,
}

impl Method {
    /// The name vsd's config uses.
    pub fn config_name(self) -> &'static str {
        match self {
            Method::Nat => "nat",
            Method::Dr => "dr",
            Method::Tun => "tun",
            Method::FullNat => "fullnat",
        }
    }

    /// Whether the method rewrites ports (the real servers then listen on
    /// other ports than the service, which the test exercises).
    pub fn maps_ports(self) -> bool {
        matches!(self, Method::Nat | Method::FullNat)
    }

    /// The real servers' HTTP port.
    pub fn rs_http_port(self) -> u16 {
        if self.maps_ports() {
            8080
        } else {
            HTTP_PORT
        }
    }

    /// The real servers' UDP port.
    pub fn rs_udp_port(self) -> u16 {
        if self.maps_ports() {
            9090
        } else {
            UDP_PORT
        }
    }

    /// The real servers' addresses.
    pub fn rs_addrs(self) -> [&'static str; 2] {
        if self == Method::Dr {
            RS_LAN
        } else {
            RS_SRV
        }
    }

    /// Whether the director has a port on the server network.
    pub fn has_srv_port(self) -> bool {
        self != Method::Dr
    }
}

// ---------------------------------------------------------------- reaper

struct Ledger {
    path: PathBuf,
    entries: Mutex<(u64, Vec<(u64, String)>)>,
}

impl Ledger {
    fn write(&self, entries: &[(u64, String)]) {
        let tmp = self.path.with_extension("tmp");
        let mut text = String::new();
        for (_, line) in entries {
            text.push_str(line);
            text.push('\n');
        }
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &self.path);
        }
    }
}

fn ledger() -> &'static Ledger {
    static LEDGER: OnceLock<Ledger> = OnceLock::new();
    LEDGER.get_or_init(|| {
        let pid = std::process::id();
        let path = std::env::temp_dir().join(format!("vsd-e2e-ledger-{pid}"));
        let _ = std::fs::write(&path, "");
        let reaper = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/helpers/reaper.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(reaper)
            .arg(pid.to_string())
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: setsid is async-signal-safe; it only detaches the child
        // from our session so a signal to our process group spares it.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        // The reaper outlives us on purpose: never waited for.
        let child = cmd.spawn().expect("start tests/helpers/reaper.sh");
        std::mem::forget(child);
        Ledger {
            path,
            entries: Mutex::new((0, Vec::new())),
        }
    })
}

/// A line in the reaper's ledger, removed again on drop.
pub struct Registration(u64);

/// Tell the reaper about something to remove if this process dies:
/// `kind` is one of netns, link, dir, dpdk (see reaper.sh).
pub fn register(kind: &str, arg: &str) -> Registration {
    let l = ledger();
    let mut g = l.entries.lock().unwrap_or_else(|e| e.into_inner());
    g.0 += 1;
    let id = g.0;
    g.1.push((id, format!("{kind} {arg}")));
    l.write(&g.1);
    Registration(id)
}

impl Drop for Registration {
    fn drop(&mut self) {
        let l = ledger();
        let mut g = l.entries.lock().unwrap_or_else(|e| e.into_inner());
        g.1.retain(|(id, _)| *id != self.0);
        l.write(&g.1);
    }
}

// ---------------------------------------------------------------- guards

/// A namespace known to the reaper. Derefs to [`Netns`].
pub struct Ns {
    pub ns: Netns,
    _reg: Registration,
}

impl Ns {
    pub fn new(tag: &str) -> Ns {
        let name = unique(tag);
        let reg = register("netns", &name);
        let ns = Netns::new(&name);
        // Keep IPv6 noise (router solicitations, DAD) off the wire.
        ns.run_any("sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.run_any("sysctl", &["-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        Ns { ns, _reg: reg }
    }

    /// Set a sysctl inside the namespace; panics on failure.
    pub fn sysctl(&self, kv: &str) {
        self.run("sysctl", &["-qw", kv]);
    }
}

impl std::ops::Deref for Ns {
    type Target = Netns;
    fn deref(&self) -> &Netns {
        &self.ns
    }
}

/// A temporary directory, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
    _reg: Registration,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique(tag));
        let reg = register("dir", &path.display().to_string());
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path, _reg: reg }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A DPDK `--file-prefix` for one vsd run. DPDK leaves its runtime
/// directory (/var/run/dpdk/PREFIX) behind even after a clean exit, and
/// hugepage files after a crash: both are removed on drop, or by the reaper.
/// Drop it after the vsd that used it has ended.
pub struct DpdkPrefix {
    pub name: String,
    _reg: Registration,
}

impl DpdkPrefix {
    pub fn new(tag: &str) -> DpdkPrefix {
        let name = unique(tag);
        let reg = register("dpdk", &name);
        DpdkPrefix { name, _reg: reg }
    }

    /// The guard for a prefix named elsewhere (a config's
    /// `--file-prefix=`): removed with the process's runtime files on drop.
    pub fn adopt(name: &str) -> DpdkPrefix {
        DpdkPrefix {
            name: name.to_owned(),
            _reg: register("dpdk", name),
        }
    }
}

impl Drop for DpdkPrefix {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.name));
        for dir in ["/dev/hugepages", "/mnt/huge"] {
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    let file = e.file_name().to_string_lossy().into_owned();
                    if file.starts_with(&format!("{}map_", self.name)) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
    }
}

/// Make a command die with the thread that started it.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches only
    // the child's own attributes.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        })
    }
}

/// The Python interpreter for the helpers: Debian's, when present.
pub fn python3() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Path of a helper program in tests/helpers.
pub fn helper(name: &str) -> String {
    format!("{}/tests/helpers/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A background process (usually inside a namespace), SIGKILLed on drop.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Start `program args` in `ns` (or in our namespace), output to
    /// `log_dir/<name>.log`.
    pub fn spawn(
        ns: Option<&Netns>,
        name: &str,
        log_dir: &Path,
        program: &str,
        args: &[&str],
    ) -> Proc {
        let log = log_dir.join(format!("{name}.log"));
        let f = std::fs::File::create(&log).expect("log file");
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name, program]);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(f.try_clone().expect("dup log")))
            .stderr(Stdio::from(f));
        let child = die_with_parent(&mut cmd)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({program}): {e}"));
        Proc {
            name: name.into(),
            child,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait (bounded) until `ready` exists; panics with the log if the
    /// process ends first or the time runs out.
    pub fn wait_ready(&mut self, ready: &Path, limit: Duration) {
        let mut ended = None;
        let ok = wait_for(limit, || {
            ended = self.child.try_wait().ok().flatten();
            ready.exists() || ended.is_some()
        });
        assert!(
            ok && ended.is_none() && ready.exists(),
            "{} did not become ready (exit {ended:?}):\n{}",
            self.name,
            self.log_text()
        );
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `program args` inside `ns` under `timeout`, whatever its status.
pub fn run_in(ns: &Netns, secs: u32, program: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name, "timeout", "-s", "KILL"])
        .arg(secs.to_string())
        .arg(program)
        .args(args)
        .stdin(Stdio::null());
    die_with_parent(&mut cmd)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} in {}: {e}", ns.name))
}

/// stdout and stderr of a command, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Turn off checksum (and so segmentation) offloads of an interface: the
/// kernel then fills in every checksum before a packet leaves, and a veth
/// no longer marks received packets as checksum-verified, so a real server
/// really checks the checksums the director wrote.
pub fn no_offloads(ns: &Netns, dev: &str, strict: bool) {
    let out = ns.run_any("ethtool", &["-K", dev, "rx", "off", "tx", "off"]);
    if strict {
        assert!(out.status.success(), "ethtool -K {dev}: {}", text(&out));
    }
}

/// The sha256 of a file, as hex, through sha256sum.
pub fn sha256_of(ns: Option<&Netns>, path: &Path) -> String {
    let p = path.display().to_string();
    let out = match ns {
        Some(ns) => run_in(ns, 60, "sha256sum", &[&p]),
        None => sh("timeout", &["60", "sha256sum", &p]),
    };
    assert!(out.status.success(), "sha256sum {p}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Fill a file with `len` pseudo-random bytes (xorshift64*, fixed seed).
pub fn write_random_file(path: &Path, len: usize, seed: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create file"));
    let mut x = seed | 1;
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            let n = chunk.len();
            chunk.copy_from_slice(&v[..n]);
        }
        let n = left.min(buf.len());
        f.write_all(&buf[..n]).expect("write random file");
        left -= n;
    }
    f.flush().expect("flush random file");
}

/// Move a root-namespace interface into `ns`, waiting for it to exist.
pub fn move_link(dev: &str, ns: &Netns) {
    assert!(
        wait_for(Duration::from_secs(20), || {
            sh_any("ip", &["link", "show", dev]).status.success()
        }),
        "interface {dev} did not appear"
    );
    sh("ip", &["link", "set", dev, "netns", &ns.name]);
}

// ---------------------------------------------------------------- topology

/// One real server: a namespace running rs_server.py (HTTP + UDP echo) and,
/// for TUN, ipip_decap.py.
pub struct RealServer {
    pub server: Proc,
    pub decap: Option<Proc>,
    pub ns: Ns,
    /// "rs1", "rs2": what its `id` file and UDP answers say.
    pub id: String,
    pub addr: String,
    pub mac: String,
    /// Distinct peers seen by the server: lines "tcp ADDR" / "udp ADDR".
    pub peer_log: PathBuf,
    /// Distinct outer sources of IPIP packets (TUN): lines "outer ADDR".
    pub decap_log: PathBuf,
}

impl RealServer {
    /// The distinct peers the server has seen, as ("tcp"|"udp", addr).
    pub fn peers(&self) -> Vec<(String, String)> {
        lines_pairs(&self.peer_log)
    }

    /// The distinct outer source addresses the decap helper has seen.
    pub fn outer_sources(&self) -> Vec<String> {
        lines_pairs(&self.decap_log)
            .into_iter()
            .map(|(_, a)| a)
            .collect()
    }
}

fn lines_pairs(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_once(' ')?;
            Some((a.to_string(), b.to_string()))
        })
        .collect()
}

/// A client and two real servers wired for one forwarding method around a
/// director whose interfaces (`lan_if`, and `srv_if` except for DR) exist in
/// the root namespace when [`Topology::build`] is called; it moves them in.
///
/// ```text
/// NAT, FULLNAT:
///   [client ns] lan_if 198.18.0.2 ==== director ==== srv_if -[switch ns: br0]- veth - [rs1 ns] eth0 198.18.1.11
///                                                                         \- veth - [rs2 ns] eth0 198.18.1.12
///   NAT: real servers route via 198.18.1.1. FULLNAT: no route off 198.18.1.0/24.
/// DR:
///   [switch ns: br0] -- lan_if (director 198.18.0.1, VIP)
///         |-- veth -- [client ns] eth0 198.18.0.2
///         |-- veth -- [rs1 ns] eth0 198.18.0.11, lo: VIP/32, arp_ignore=1 arp_announce=2
///         \-- veth -- [rs2 ns] eth0 198.18.0.12, lo: VIP/32, ...
/// TUN:
///   [client ns] lan_if 198.18.0.2 ==== director ==== srv_if -[switch ns: br0]- rs1, rs2 (198.18.1.11/.12)
///   [client ns] eth1 198.18.1.2 ---------------------------------/   (the real servers' way back)
///   real servers: VIP/32 on lo, default via 198.18.1.2, nftables drops IP protocol 4,
///   ipip_decap.py: eth0 (protocol 4) -> tun ipip0
/// ```
pub struct Topology {
    pub method: Method,
    pub rs: Vec<RealServer>,
    pub client: Ns,
    pub switch: Ns,
    /// Web roots, logs, downloads.
    pub dir: TempDir,
    /// sha256 of the file every real server serves as /big.bin.
    pub big_sha256: String,
    /// The file the client uploads (`upload.bin` in `dir`) and its sha256.
    pub upload: PathBuf,
    pub upload_sha256: String,
    /// The client's interface toward the director.
    pub client_if: String,
}

/// Add a veth from `sw`'s bridge `br0` (end `sw_end`) to `ns` (end `ns_end`).
fn bridge_veth(sw: &Netns, sw_end: &str, ns: &Netns, ns_end: &str, mac: Option<&str>) {
    let mut args = vec![
        "link", "add", sw_end, "type", "veth", "peer", "name", ns_end,
    ];
    if let Some(m) = mac {
        args.extend_from_slice(&["address", m]);
    }
    args.extend_from_slice(&["netns", &ns.name]);
    sw.ip(&args);
    sw.ip(&["link", "set", sw_end, "master", "br0", "up"]);
    no_offloads(sw, sw_end, true);
    no_offloads(ns, ns_end, true);
    ns.ip(&["link", "set", ns_end, "up"]);
}

impl Topology {
    /// Build the topology for `method` around the director's interfaces.
    pub fn build(method: Method, lan_if: &str, srv_if: Option<&str>) -> Topology {
        let dir = TempDir::new("vsd-topo-");
        let big = dir.path.join("big.bin");
        write_random_file(&big, BIG_FILE_BYTES, 0x5eed_0000_0000_0001);
        let big_sha256 = sha256_of(None, &big);
        let upload = dir.path.join("upload.bin");
        write_random_file(&upload, UPLOAD_BYTES, 0x5eed_0000_0000_0002);
        let upload_sha256 = sha256_of(None, &upload);

        let client = Ns::new("vc");
        let switch = Ns::new("vw");
        switch.ip(&["link", "add", "br0", "type", "bridge"]);
        switch.ip(&["link", "set", "br0", "up"]);
        for ns in [&client, &switch] {
            ns.sysctl("net.ipv4.conf.all.rp_filter=0");
            ns.sysctl("net.ipv4.conf.default.rp_filter=0");
        }

        // The client's way to the director. A DPDK net_tap port gives its
        // kernel-side interface the port's own MAC; on a bridge that MAC
        // would count as the bridge's own (frames to vsd delivered locally,
        // never forwarded to the tap), and on the client it would make the
        // client claim vsd's MAC. The kernel side is the wire's far end, so
        // it gets a MAC of its own.
        let client_if = if method == Method::Dr {
            move_link(lan_if, &switch);
            switch.ip(&["link", "set", lan_if, "address", "02:00:00:00:03:01"]);
            switch.ip(&["link", "set", lan_if, "master", "br0", "up"]);
            no_offloads(&switch, lan_if, false);
            bridge_veth(&switch, "pc", &client, "eth0", Some("02:00:00:00:02:02"));
            "eth0".to_string()
        } else {
            move_link(lan_if, &client);
            client.ip(&["link", "set", lan_if, "address", "02:00:00:00:02:01"]);
            client.ip(&["link", "set", lan_if, "up"]);
            no_offloads(&client, lan_if, false);
            lan_if.to_string()
        };
        client.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", &client_if]);

        // the director's side toward the real servers
        if let Some(srv) = srv_if {
            move_link(srv, &switch);
            switch.ip(&["link", "set", srv, "address", "02:00:00:00:03:02"]);
            switch.ip(&["link", "set", srv, "master", "br0", "up"]);
            no_offloads(&switch, srv, false);
        }
        if method == Method::Tun {
            bridge_veth(&switch, "pc", &client, "eth1", Some("02:00:00:00:02:03"));
            client.ip(&[
                "addr",
                "add",
                &format!("{CLIENT_SRV_LEG}/24"),
                "dev",
                "eth1",
            ]);
        }

        let mut rs = Vec::new();
        for (i, addr) in method.rs_addrs().iter().enumerate() {
            rs.push(Self::real_server(method, &switch, &dir.path, i, addr));
        }
        Topology {
            method,
            rs,
            client,
            switch,
            dir,
            big_sha256,
            upload,
            upload_sha256,
            client_if,
        }
    }

    fn real_server(method: Method, switch: &Netns, dir: &Path, i: usize, addr: &str) -> RealServer {
        let id = format!("rs{}", i + 1);
        let ns = Ns::new(&format!("v{id}"));
        bridge_veth(switch, &format!("p{}", i + 1), &ns, "eth0", Some(RS_MAC[i]));
        ns.sysctl("net.ipv4.conf.all.rp_filter=0");
        ns.sysctl("net.ipv4.conf.default.rp_filter=0");
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
        match method {
            Method::Nat => {
                ns.ip(&["route", "add", "default", "via", SRV_DIP]);
            }
            // The real servers' way back to the client, not through the director.
            Method::Tun => {
                ns.ip(&["route", "add", "default", "via", CLIENT_SRV_LEG]);
            }
            // FULLNAT: no way back to the client, only the on-link local
            // address. DR: the client is on-link.
            Method::FullNat | Method::Dr => {}
        }
        if matches!(method, Method::Dr | Method::Tun) {
            // the VIP is local but never announced: the LVS real-server recipe
            ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
            for dev in ["all", "eth0"] {
                ns.sysctl(&format!("net.ipv4.conf.{dev}.arp_ignore=1"));
                ns.sysctl(&format!("net.ipv4.conf.{dev}.arp_announce=2"));
            }
        }

        let www = dir.join(&id);
        std::fs::create_dir_all(&www).expect("web root");
        std::fs::write(www.join("id"), format!("{id}\n")).expect("id file");
        std::fs::hard_link(dir.join("big.bin"), www.join("big.bin")).expect("link big.bin");
        let peer_log = dir.join(format!("{id}.peers"));
        let decap_log = dir.join(format!("{id}.outer"));

        let mut decap = None;
        if method == Method::Tun {
            let rules = "table inet vsdtest {\n chain input {\n  type filter hook input priority 0; policy accept;\n  ip protocol 4 counter drop\n }\n}\n";
            let nft = dir.join(format!("{id}.nft"));
            std::fs::write(&nft, rules).expect("nft rules");
            ns.run("nft", &["-f", &nft.display().to_string()]);
            let ready = dir.join(format!("{id}.decap.ready"));
            let mut p = Proc::spawn(
                Some(&ns),
                &format!("{id}-decap"),
                dir,
                python3(),
                &[
                    &helper("ipip_decap.py"),
                    "--iface",
                    "eth0",
                    "--addr",
                    addr,
                    "--tun",
                    "ipip0",
                    "--log",
                    &decap_log.display().to_string(),
                    "--ready",
                    &ready.display().to_string(),
                ],
            );
            p.wait_ready(&ready, Duration::from_secs(20));
            decap = Some(p);
        }

        let ready = dir.join(format!("{id}.ready"));
        let mut server = Proc::spawn(
            Some(&ns),
            &id,
            dir,
            python3(),
            &[
                &helper("rs_server.py"),
                "--name",
                &id,
                "--dir",
                &www.display().to_string(),
                "--http-port",
                &method.rs_http_port().to_string(),
                "--udp-port",
                &method.rs_udp_port().to_string(),
                "--peer-log",
                &peer_log.display().to_string(),
                "--ready",
                &ready.display().to_string(),
            ],
        );
        server.wait_ready(&ready, Duration::from_secs(20));
        RealServer {
            server,
            decap,
            ns,
            id,
            addr: addr.to_string(),
            mac: RS_MAC[i].to_string(),
            peer_log,
            decap_log,
        }
    }

    /// Run a client program (bounded by `secs`) in the client namespace.
    pub fn client_run(&self, secs: u32, program: &str, args: &[&str]) -> Output {
        run_in(&self.client, secs, program, args)
    }

    /// Panic if a real server's helper died.
    pub fn assert_servers_alive(&mut self) {
        for rs in &mut self.rs {
            assert!(
                rs.server.alive(),
                "{} server died:\n{}",
                rs.id,
                rs.server.log_text()
            );
            if let Some(d) = &mut rs.decap {
                assert!(d.alive(), "{} decap died:\n{}", rs.id, d.log_text());
            }
        }
    }
}

// ---------------------------------------------------------------- reference director

/// A director built from plain Linux, to prove the topologies, servers and
/// checks right without vsd: NAT and FULLNAT with nftables DNAT (and SNAT to
/// the local address) choosing real servers round-robin (numgen), DR and TUN
/// with tests/helpers/ref_director.py, round-robin per flow.
///
/// Its interfaces toward the topology are veths whose far ends (`lan_if`,
/// `srv_if`) wait in the root namespace for [`Topology::build`].
pub struct RefDirector {
    pub procs: Vec<Proc>,
    pub ns: Ns,
    pub lan_if: String,
    pub srv_if: Option<String>,
    _links: Vec<Registration>,
    method: Method,
}

impl RefDirector {
    /// Make the namespace and the veths; call [`RefDirector::start`] once the
    /// topology is built.
    pub fn new(method: Method) -> RefDirector {
        let ns = Ns::new("vd");
        let mut links = Vec::new();
        let lan_if = unique("rl");
        links.push(register("link", &lan_if));
        sh(
            "ip",
            &[
                "link",
                "add",
                &lan_if,
                "type",
                "veth",
                "peer",
                "name",
                "lan",
                "address",
                "02:00:00:00:00:01",
                "netns",
                &ns.name,
            ],
        );
        ns.ip(&["link", "set", "lan", "up"]);
        no_offloads(&ns, "lan", true);
        sh("ethtool", &["-K", &lan_if, "rx", "off", "tx", "off"]);
        ns.ip(&["addr", "add", &format!("{LAN_DIP}/24"), "dev", "lan"]);
        let mut srv_if = None;
        if method.has_srv_port() {
            let s = unique("rs");
            links.push(register("link", &s));
            sh(
                "ip",
                &[
                    "link",
                    "add",
                    &s,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "srv",
                    "address",
                    "02:00:00:00:01:01",
                    "netns",
                    &ns.name,
                ],
            );
            ns.ip(&["link", "set", "srv", "up"]);
            no_offloads(&ns, "srv", true);
            sh("ethtool", &["-K", &s, "rx", "off", "tx", "off"]);
            ns.ip(&["addr", "add", &format!("{SRV_DIP}/24"), "dev", "srv"]);
            srv_if = Some(s);
        }
        RefDirector {
            procs: Vec::new(),
            ns,
            lan_if,
            srv_if,
            _links: links,
            method,
        }
    }

    /// Start directing traffic for the VIP to the topology's real servers.
    pub fn start(&mut self, topo: &Topology) {
        let dir = &topo.dir.path;
        match self.method {
            Method::Nat | Method::FullNat => {
                self.ns.sysctl("net.ipv4.ip_forward=1");
                self.ns
                    .ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lan"]);
                let [a, b] = RS_SRV;
                let (hp, up) = (self.method.rs_http_port(), self.method.rs_udp_port());
                let mut rules = format!(
                    "table ip vsdref {{\n chain pre {{\n  type nat hook prerouting priority dstnat; policy accept;\n  \
                     ip daddr {VIP} meta l4proto {{ tcp, udp }} meta mark set numgen inc mod 2\n  \
                     ip daddr {VIP} meta mark 0 tcp dport {HTTP_PORT} dnat to {a}:{hp}\n  \
                     ip daddr {VIP} meta mark 1 tcp dport {HTTP_PORT} dnat to {b}:{hp}\n  \
                     ip daddr {VIP} meta mark 0 udp dport {UDP_PORT} dnat to {a}:{up}\n  \
                     ip daddr {VIP} meta mark 1 udp dport {UDP_PORT} dnat to {b}:{up}\n }}\n"
                );
                if self.method == Method::FullNat {
                    self.ns
                        .ip(&["addr", "add", &format!("{LIP}/32"), "dev", "srv"]);
                    rules.push_str(&format!(
                        " chain post {{\n  type nat hook postrouting priority srcnat; policy accept;\n  \
                         oifname \"srv\" snat to {LIP}\n }}\n"
                    ));
                }
                rules.push_str("}\n");
                let f = dir.join("ref-director.nft");
                std::fs::write(&f, rules).expect("nft rules");
                self.ns.run("nft", &["-f", &f.display().to_string()]);
            }
            Method::Dr | Method::Tun => {
                self.ns.sysctl("net.ipv4.ip_forward=0");
                let ready = dir.join("ref-director.ready");
                let mode = if self.method == Method::Dr {
                    "dr"
                } else {
                    "tun"
                };
                let mut args = vec![
                    helper("ref_director.py"),
                    "--mode".into(),
                    mode.into(),
                    "--lan".into(),
                    "lan".into(),
                    "--vip".into(),
                    VIP.into(),
                    "--ready".into(),
                    ready.display().to_string(),
                ];
                for rs in &topo.rs {
                    args.push("--rs".into());
                    if self.method == Method::Dr {
                        args.push(format!("{}={}", rs.addr, rs.mac));
                    } else {
                        args.push(rs.addr.clone());
                    }
                }
                let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                let mut p = Proc::spawn(Some(&self.ns), "ref-director", dir, python3(), &argv);
                p.wait_ready(&ready, Duration::from_secs(20));
                self.procs.push(p);
            }
        }
    }
}

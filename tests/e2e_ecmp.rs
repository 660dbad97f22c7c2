//! End to end: several active vsd directors behind a router's ECMP,
//! announced over BGP by BIRD, losing no connection when one is drained,
//! killed, added back or left without real servers (docs/ecmp.md).
//!
//! ```text
//!  [client ns] 198.18.1.10 --- [router ns] BIRD, ECMP (L4 hash), BFD
//!                               198.18.1.1 | 198.18.0.254
//!                                          |            br0 [lan ns]
//!  [dir i ns] vsd i (tap on br0; twin 198.18.0.i) + BIRD ---+---  (i = 1..N)
//!  [rs k ns] 198.18.0.11, .12: echo servers; DR VIP on lo --+
//! ```
//!
//! Each director runs vsd (`idle = "sleep"`, `--no-pci`, its own file
//! prefix) with a kernel twin carrying its address, a master and a backup
//! sync daemon on the twin, `[announce] interface = "vip0"` (vsd puts the
//! VIPs it serves there; a TUN device, as this kernel has no dummy
//! driver), and BIRD (configs/bird-director.conf, its `define` lines
//! rewritten) announcing the VIPs found on `vip0` and its FULLNAT local
//! address 198.18.2.i plus the covering 198.18.2.0/24. The router's BIRD (configs/bird-router.conf)
//! merges the VIP routes into one multipath route; the kernel hashes
//! flows on addresses and ports (`fib_multipath_hash_policy=1`).
//!
//! Services, the same on every director: DR on 198.18.3.1:80 and FULLNAT
//! on 198.18.3.2:80 (to port 8080; director i's local address pool is
//! 198.18.2.i alone, so local ports never collide), both mh with
//! `sloppy_tcp` (the same real server for a flow on every director).
//!
//! Load (tests/helpers/ecmp_load.py): long-lived connections per method
//! (`VSD_ECMP_CONNS`, 120 by default: 240 in all), each pinging every
//! 200 ms, plus 5 new connections per second per method. Events, each
//! followed by a count of broken long connections (reset, closed, no
//! answer within 6 s, or another server answering) and failed new ones:
//!
//! 1. drain the last director (`vsadm --drain`: its VIPs leave `vip0`;
//!    BIRD withdraws them);
//! 2. undrain it (`vsadm --undrain`);
//! 3. SIGKILL the first director's vsd (its twin vanishes; the router's
//!    BFD notices; its local address's replies follow the covering
//!    prefix to the survivors, which know its connections from sync);
//! 4. add it back: a fresh vsd learns the fleet's connections from sync,
//!    then its BIRD starts;
//! 5. remove every real server on the last director alone (`vsadm -d`):
//!    it no longer serves the VIPs and withdraws them.
//!
//! The router's table must show the VIPs over N, N-1, N, N-1, N, N-1
//! next hops; no long-lived connection may break, no new one fail. A BFD
//! session the router dropped although its director lived (a BIRD starved
//! of CPU: 3 x 100 ms is tight on 2 shared CPUs; BIRD runs at nice -10)
//! moves flows twice; synced connections survive that, a FULLNAT
//! connection younger than its first sync may not (docs/ecmp.md), so in
//! an event with such a false positive failed new connections are
//! reported, not asserted. Printed (`--nocapture`): per event and method, broken and failed
//! connections, the longest stall, and the convergence times (router's
//! route, BFD and BGP as the router's BIRD reports them).
//!
//! `VSD_ECMP_DIRECTORS=3` runs three directors (scripts/ecmp-scaleout.sh).
//! Needs root, /dev/net/tun, hugepages, bird2, python3.

mod common;

use common::topo::{helper, no_offloads, python3, text, DpdkPrefix, Ns, Proc, TempDir};
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ROUTER_LAN: &str = "198.18.0.254";
const ROUTER_CLIENT: &str = "198.18.1.1";
const CLIENT: &str = "198.18.1.10";
const RS: [&str; 2] = ["198.18.0.11", "198.18.0.12"];
const RS_MAC: [&str; 2] = ["02:00:00:00:0d:01", "02:00:00:00:0d:02"];
const VIP_DR: &str = "198.18.3.1";
const VIP_FULLNAT: &str = "198.18.3.2";
const VPORT: u16 = 80;
const FULLNAT_RS_PORT: u16 = 8080;
const LOCAL_RANGE: &str = "198.18.2.0/24";
const SYNCID: u8 = 17;
/// A long connection without an answer this long is broken.
const BREAK_AFTER_S: f64 = 6.0;
/// After an event has converged, time for breaks to show.
const SETTLE: Duration = Duration::from_secs(8);
/// The methods, as the load client names its targets.
const METHODS: [(&str, &str); 2] = [("dr", VIP_DR), ("fullnat", VIP_FULLNAT)];

fn directors_wanted() -> usize {
    std::env::var("VSD_ECMP_DIRECTORS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

/// `VSD_ECMP_SYNC=0`: no connection sync (FULLNAT is then only
/// reported, not asserted); `VSD_ECMP_SLOPPY=0`: no sloppy pickup (DR
/// likewise). For docs/ecmp.md's table of what survives without them.
fn switch(name: &str) -> bool {
    std::env::var(name).map_or(true, |v| v != "0")
}

fn conns_per_method() -> usize {
    std::env::var("VSD_ECMP_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120)
}

/// CLOCK_MONOTONIC in seconds, the clock Python's `time.monotonic()` reads.
fn mono() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into the timespec we own.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn dip(i: usize) -> String {
    format!("198.18.0.{i}")
}

fn local_addr(i: usize) -> String {
    format!("198.18.2.{i}")
}

/// `text` with the BIRD line `define NAME = ...;` set to `value`.
fn set_define(text: &str, name: &str, value: &str) -> String {
    let head = format!("define {name} =");
    let mut found = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with(&head) {
                found = true;
                format!("{head} {value};")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(found, "no `{head}` line in the BIRD config");
    out.join("\n") + "\n"
}

fn bird_config(file: &str, defines: &[(&str, String)]) -> String {
    let path = format!("{}/configs/{file}", env!("CARGO_MANIFEST_DIR"));
    let mut t = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for (k, v) in defines {
        t = set_define(&t, k, v);
    }
    t
}

/// A BIRD in a namespace, with its control socket.
struct Bird {
    proc: Proc,
    socket: PathBuf,
}

impl Bird {
    fn start(ns: &Ns, files: &Path, name: &str, config: &str) -> Bird {
        let conf = files.join(format!("{name}.conf"));
        std::fs::write(&conf, config).expect("write BIRD config");
        let socket = files.join(format!("{name}.ctl"));
        let _ = std::fs::remove_file(&socket);
        let c = conf.display().to_string();
        let s = socket.display().to_string();
        // log times in UTC, to compare with the test's clock; BFD's
        // 100 ms timers want BIRD to get the CPU when due (routers give
        // their routing daemons priority too)
        let mut proc = Proc::spawn(
            Some(ns),
            name,
            files,
            "env",
            &[
                "TZ=UTC", "nice", "-n", "-10", "bird", "-f", "-c", &c, "-s", &s,
            ],
        );
        let mut ended = None;
        let up = wait_for(Duration::from_secs(10), || {
            ended = proc.child.try_wait().ok().flatten();
            ended.is_some() || socket.exists()
        });
        assert!(
            up && ended.is_none(),
            "BIRD {name} did not start ({ended:?}):\n{}",
            proc.log_text()
        );
        Bird { proc, socket }
    }

    fn ask(&self, what: &str) -> String {
        let mut args = vec!["-s", self.socket.to_str().expect("socket path")];
        args.extend(what.split_whitespace());
        text(&sh_any("birdc", &args))
    }

    /// BFD session state per neighbour address.
    fn bfd(&self) -> BTreeMap<String, String> {
        self.ask("show bfd sessions")
            .lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.len() >= 3 && w[0].starts_with("198.18."))
                    .then(|| (w[0].to_string(), w[2].to_string()))
            })
            .collect()
    }

    /// BGP sessions: (protocol name, neighbour address, BGP state).
    fn sessions(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        let (mut name, mut state) = (String::new(), String::new());
        for l in self.ask("show protocols all").lines() {
            let w: Vec<&str> = l.split_whitespace().collect();
            if !l.starts_with(char::is_whitespace) && w.get(1) == Some(&"BGP") {
                name = w[0].to_string();
                state.clear();
            }
            let t = l.trim();
            if let Some(s) = t.strip_prefix("BGP state:") {
                state = s.trim().to_string();
            } else if let Some(a) = t.strip_prefix("Neighbor address:") {
                out.push((name.clone(), a.trim().to_string(), state.clone()));
            }
        }
        out
    }

    /// Neighbour addresses of BGP sessions in state Established.
    fn established(&self) -> BTreeSet<String> {
        self.sessions()
            .into_iter()
            .filter(|(_, _, st)| st == "Established")
            .map(|(_, a, _)| a)
            .collect()
    }

    /// The time of the first log line at or after `from` (UTC seconds)
    /// containing `needle`.
    fn logged(&self, from: f64, needle: &str) -> Option<f64> {
        self.proc.log_text().lines().find_map(|l| {
            let t = utc_secs(l.get(..23)?)?;
            (t >= from && l.contains(needle)).then_some(t)
        })
    }
}

/// Seconds since the epoch of a UTC time "YYYY-MM-DD HH:MM:SS.fff" (also
/// with a `T`, as `ip -ts` writes it).
fn utc_secs(s: &str) -> Option<f64> {
    let (date, time) = s.trim().split_once([' ', 'T'])?;
    let mut d = date.split('-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':').map(str::parse::<f64>);
    let (h, min, sec) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    // days from the civil date (H. Hinnant's algorithm)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some(days as f64 * 86400.0 + h * 3600.0 + min * 60.0 + sec)
}

/// The CLOCK_MONOTONIC reading at UTC time `w` (a moment ago).
fn wall_to_mono(w: f64) -> f64 {
    mono() - (wall() - w)
}

/// UTC seconds since the epoch, now.
fn wall() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Route changes `ip -ts monitor route` logged: (UTC seconds, destination).
fn route_changes(log: &Path) -> Vec<(f64, String)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (ts, rest) = l.strip_prefix('[')?.split_once(']')?;
            let mut w = rest.split_whitespace();
            let mut dst = w.next()?;
            if dst == "Deleted" {
                dst = w.next()?;
            }
            Some((utc_secs(ts)?, dst.to_string()))
        })
        .collect()
}

/// The router's IPv4 routes: destination -> next hops.
fn routes(router: &Ns) -> BTreeMap<String, BTreeSet<String>> {
    let out = text(&router.run_any("ip", &["-4", "route", "show"]));
    let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut cur = String::new();
    for l in out.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.is_empty() {
            continue;
        }
        if !l.starts_with(char::is_whitespace) {
            cur = w[0].to_string();
            m.entry(cur.clone()).or_default();
        }
        for pair in w.windows(2) {
            if pair[0] == "via" {
                m.entry(cur.clone())
                    .or_default()
                    .insert(pair[1].to_string());
            }
        }
    }
    m
}

/// One director: namespace, vsd with its twin, BIRD.
struct Director {
    i: usize,
    sync: bool,
    sloppy: bool,
    ns: Ns,
    tap: String,
    twin: String,
    files: PathBuf,
    vsd: Option<Vsd>,
    bird: Option<Bird>,
    prefixes: Vec<DpdkPrefix>,
}

impl Director {
    fn new(i: usize, files: &Path, sync: bool, sloppy: bool) -> Director {
        let ns = Ns::new(&format!("ed{i}"));
        ns.sysctl("net.ipv4.conf.all.rp_filter=0");
        ns.sysctl("net.ipv4.conf.default.rp_filter=0");
        Director {
            i,
            sync,
            sloppy,
            ns,
            tap: unique(&format!("et{i}")),
            twin: unique(&format!("ek{i}")),
            files: files.to_path_buf(),
            vsd: None,
            bird: None,
            prefixes: Vec::new(),
        }
    }

    fn mac(&self) -> String {
        format!("02:00:00:00:0a:{:02x}", self.i)
    }

    fn config(&self, prefix: &str) -> String {
        let (tap, twin, mac, dip, lip) = (
            &self.tap,
            &self.twin,
            self.mac(),
            dip(self.i),
            local_addr(self.i),
        );
        let mut c = format!(
            r#"
[eal]
args = ["--no-pci", "--file-prefix={prefix}"]
huge = true
memory_mb = 128

[lcores]
control = 0
workers = [1]
idle = "sleep"

[control]
socket = "{{dir}}/vsd.sock"

[lb]
conn_capacity = 8192
sloppy_tcp = {sloppy}

[[port]]
name = "lan0"
device = "net_tap0,iface={tap}"
mac = "{mac}"
addresses = ["{dip}/24"]
gateway = "{ROUTER_LAN}"
kernel_iface = "{twin}"

# vsd puts the VIPs it serves on vip0 (a TUN device here: this kernel has
# no dummy driver) and BIRD announces them
[announce]
interface = "vip0"
drain_timeout = 120
"#,
            sloppy = self.sloppy,
        );
        if self.sync {
            for role in ["master", "backup"] {
                c.push_str(&format!(
                    "\n[[sync_daemon]]\nrole = \"{role}\"\nmcast_interface = \"{twin}\"\nsyncid = {SYNCID}\n"
                ));
            }
        }
        for (vip, port, method, pool) in [
            (VIP_DR, VPORT, "dr", String::new()),
            (
                VIP_FULLNAT,
                FULLNAT_RS_PORT,
                "fullnat",
                format!("local_addresses = [\"{lip}\"]\n"),
            ),
        ] {
            c.push_str(&format!(
                "\n[[service]]\nproto = \"tcp\"\nvip = \"{vip}\"\nport = {VPORT}\nscheduler = \"mh\"\n{pool}"
            ));
            for rs in RS {
                c.push_str(&format!(
                    "\n[[service.real_server]]\naddress = \"{rs}\"\nport = {port}\nmethod = \"{method}\"\n"
                ));
            }
        }
        c
    }

    /// Start vsd, wait for its tap and twin, move the tap onto the bridge.
    fn start_vsd(&mut self, lan: &Ns) {
        let prefix = DpdkPrefix::new(&format!("vsdec{}", self.i));
        let vsd = Vsd::start_in(Some(&self.ns.name), &self.config(&prefix.name));
        self.prefixes.push(prefix);
        let (ns, tap, twin, d) = (&self.ns, &self.tap, &self.twin, dip(self.i));
        assert!(
            wait_for(Duration::from_secs(20), || {
                sh_any("ip", &["-n", &ns.name, "link", "show", tap])
                    .status
                    .success()
                    && text(&sh_any("ip", &["-n", &ns.name, "-4", "addr", "show", twin]))
                        .contains(&d)
            }),
            "director {}: tap or twin missing:\n{}",
            self.i,
            vsd.log_text()
        );
        ns.ip(&["link", "set", tap, "netns", &lan.name]);
        lan.ip(&[
            "link",
            "set",
            tap,
            "address",
            &format!("02:00:00:00:3a:{:02x}", self.i),
        ]);
        lan.ip(&["link", "set", tap, "master", "br0", "up"]);
        no_offloads(lan, tap, false);
        self.vsd = Some(vsd);
    }

    fn start_bird(&mut self) {
        let conf = bird_config(
            "bird-director.conf",
            &[
                ("DIRECTOR", dip(self.i)),
                ("ROUTER", ROUTER_LAN.to_string()),
                ("OWN_LOCAL", format!("{}/32", local_addr(self.i))),
                ("LOCAL_RANGE", LOCAL_RANGE.to_string()),
            ],
        );
        self.bird = Some(Bird::start(
            &self.ns,
            &self.files,
            &format!("bird-d{}", self.i),
            &conf,
        ));
    }

    fn vsadm_ok(&self, args: &[&str]) -> String {
        let v = self.vsd();
        let out = v.vsadm(args);
        assert!(
            out.status.success(),
            "d{}: vsadm {args:?}: {}\n{}",
            self.i,
            text(&out),
            v.log_text()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Drain: vsd withdraws its VIPs, established connections go on.
    fn drain(&self) {
        self.vsadm_ok(&["--drain"]);
    }

    fn undrain(&self) {
        self.vsadm_ok(&["--undrain"]);
    }

    /// The VIPs on the announce interface.
    fn announced(&self) -> BTreeSet<String> {
        let out = text(
            &self
                .ns
                .run_any("ip", &["-4", "-o", "addr", "show", "dev", "vip0"]),
        );
        out.lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let i = w.iter().position(|x| *x == "inet")?;
                Some(w.get(i + 1)?.trim_end_matches("/32").to_string())
            })
            .collect()
    }

    /// SIGKILL vsd; its twin and tap vanish with it. BIRD stays (it
    /// loses its interface and its sessions).
    fn kill_vsd(&mut self) {
        let mut v = self.vsd.take().expect("vsd running");
        if let Some(mut c) = v.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn vsd(&self) -> &Vsd {
        self.vsd.as_ref().expect("vsd running")
    }

    /// Established FULLNAT connections in this director's table.
    fn fullnat_established(&self) -> usize {
        self.established(VIP_FULLNAT)
    }

    /// Established connections to `vip` in this director's table.
    fn established(&self, vip: &str) -> usize {
        let out = self.vsd().vsadm(&["-Lnc"]);
        let virt = format!("{vip}:{VPORT}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.len() >= 6 && w[2] == "ESTABLISHED" && w[4] == virt
            })
            .count()
    }
}

impl Drop for Director {
    fn drop(&mut self) {
        self.bird.take();
        self.vsd.take();
        self.prefixes.clear();
    }
}

fn bridge_veth(lan: &Ns, lan_end: &str, ns: &Ns, ns_end: &str, mac: Option<&str>) {
    let mut args = vec![
        "link", "add", lan_end, "type", "veth", "peer", "name", ns_end,
    ];
    if let Some(m) = mac {
        args.extend(["address", m]);
    }
    args.extend(["netns", &ns.name]);
    lan.ip(&args);
    lan.ip(&["link", "set", lan_end, "master", "br0", "up"]);
    no_offloads(lan, lan_end, true);
    no_offloads(ns, ns_end, true);
    ns.ip(&["link", "set", ns_end, "up"]);
}

/// What the router must show: each destination with its next hops.
type Want = Vec<(String, BTreeSet<String>)>;

fn vips_over(dirs: &[usize]) -> Want {
    let hops: BTreeSet<String> = dirs.iter().map(|i| dip(*i)).collect();
    METHODS
        .iter()
        .map(|(_, vip)| (vip.to_string(), hops.clone()))
        .collect()
}

fn matches(have: &BTreeMap<String, BTreeSet<String>>, want: &Want) -> bool {
    want.iter().all(|(dst, hops)| {
        if hops.is_empty() {
            !have.contains_key(dst)
        } else {
            have.get(dst) == Some(hops)
        }
    })
}

/// Convergence of one event, seconds after its start: first from polling
/// (which only says when it is done), then refined from the logs.
#[derive(Default, Clone)]
struct Convergence {
    route_s: Option<f64>,
    bfd_down_s: Option<f64>,
    bgp_s: Option<f64>,
}

/// What the router logged: its route changes and its BIRD's log.
struct RouterLogs<'a> {
    monitor: &'a Path,
    bird: &'a Bird,
}

impl RouterLogs<'_> {
    /// Exact times for a converged event that started at `t0w` (UTC):
    /// the last change of a watched route up to when polling saw the goal,
    /// the router's BFD session with `watch` going down, its BGP session
    /// going down or up (protocol `bgp_name`).
    fn refine(
        &self,
        t0w: f64,
        polled: &Convergence,
        want: &Want,
        watch: Option<(&str, bool)>,
        bgp_name: Option<&str>,
    ) -> Convergence {
        let Some(seen) = polled.route_s else {
            return polled.clone();
        };
        // the monitor writes a moment after the kernel changed the route
        std::thread::sleep(Duration::from_millis(200));
        let last = route_changes(self.monitor)
            .into_iter()
            .filter(|(t, dst)| {
                *t >= t0w && *t <= t0w + seen + 0.05 && want.iter().any(|(d, _)| d == dst)
            })
            .map(|(t, _)| t - t0w)
            .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
        let mut c = Convergence {
            route_s: last.or(Some(seen)),
            ..Convergence::default()
        };
        if let Some((addr, up)) = watch {
            if !up {
                c.bfd_down_s = self
                    .bird
                    .logged(
                        t0w,
                        &format!("Session to {addr} changed state from Up to Down"),
                    )
                    .map(|t| t - t0w)
                    .or(polled.bfd_down_s);
            }
            let change = if up { "up" } else { "stop" };
            c.bgp_s = bgp_name
                .and_then(|n| {
                    self.bird
                        .logged(t0w, &format!("{n}: State changed to {change}"))
                })
                .map(|t| t - t0w)
                .or(polled.bgp_s);
        }
        c
    }

    /// The router's BGP protocol (a dynamic one) for a director.
    fn bgp_name(&self, addr: &str) -> Option<String> {
        self.bird
            .sessions()
            .into_iter()
            .find(|(_, a, _)| a == addr)
            .map(|(n, _, _)| n)
    }
}

/// Poll the router until its table shows `want`; note when the BFD
/// session of `watch` went down and when its BGP session went down
/// (`bgp_up` false) or up (true).
fn converge(
    router: &Ns,
    bird: &Bird,
    t0: f64,
    want: &Want,
    watch: Option<(&str, bool)>,
    limit: Duration,
) -> Convergence {
    let mut c = Convergence::default();
    let end = Instant::now() + limit;
    loop {
        let now = mono() - t0;
        if c.route_s.is_none() && matches(&routes(router), want) {
            c.route_s = Some(mono() - t0);
        }
        if let Some((addr, up)) = watch {
            if !up && c.bfd_down_s.is_none() {
                if let Some(st) = bird.bfd().get(addr) {
                    if st != "Up" {
                        c.bfd_down_s = Some(now);
                    }
                }
            }
            if c.bgp_s.is_none() && bird.established().contains(addr) == up {
                c.bgp_s = Some(now);
            }
        }
        let done = c.route_s.is_some()
            && watch.is_none_or(|(_, up)| c.bgp_s.is_some() && (up || c.bfd_down_s.is_some()));
        if done || Instant::now() > end {
            return c;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Per event and method, what the load client saw.
#[derive(Default, Clone, Copy)]
struct Tally {
    broken: u64,
    new_ok: u64,
    new_failed: u64,
    max_stall_s: f64,
}

struct Event {
    name: String,
    t0: f64,
    conv: Convergence,
    extra: String,
}

fn tally(log: &[Value], events: &[Event], end: f64) -> Vec<BTreeMap<String, Tally>> {
    let mut out = vec![BTreeMap::new(); events.len()];
    for e in log {
        let t = e["t"].as_f64().unwrap_or(0.0);
        let Some(k) = events.iter().rposition(|ev| ev.t0 <= t).filter(|_| t < end) else {
            continue;
        };
        let target = e["target"].as_str().unwrap_or("?").to_string();
        let tl: &mut Tally = out[k].entry(target).or_default();
        match e["ev"].as_str() {
            Some("break") => tl.broken += 1,
            Some("new") if e["ok"].as_bool() == Some(true) => tl.new_ok += 1,
            Some("new") => tl.new_failed += 1,
            Some("stall") => tl.max_stall_s = tl.max_stall_s.max(e["secs"].as_f64().unwrap_or(0.0)),
            _ => {}
        }
    }
    out
}

fn read_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// FULLNAT connections established at the real servers, per local
/// address (that is, per director that made them).
fn at_servers(servers: &[(Ns, Proc)]) -> String {
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for (ns, _) in servers {
        let out = text(&ns.run_any(
            "ss",
            &[
                "-Htn",
                "state",
                "established",
                &format!("( sport = :{FULLNAT_RS_PORT} )"),
            ],
        ));
        for l in out.lines() {
            if let Some(peer) = l.split_whitespace().nth(3) {
                let addr = peer.rsplit_once(':').map_or(peer, |(a, _)| a);
                *per.entry(addr.to_string()).or_default() += 1;
            }
        }
    }
    format!("FULLNAT connections at the servers by local address {per:?}")
}

fn millis(v: Option<f64>) -> String {
    v.map_or("-".into(), |s| format!("{:.0}", s * 1000.0))
}

#[test]
fn directors_behind_ecmp_lose_no_connection() {
    if !e2e_prerequisites(true) {
        return;
    }
    assert!(
        Path::new("/usr/sbin/bird").exists(),
        "bird2 missing (scripts/setup.sh installs it)"
    );
    let n = directors_wanted();
    assert!((2..=9).contains(&n), "VSD_ECMP_DIRECTORS={n}: 2 to 9");
    let conns = conns_per_method();
    let files = TempDir::new("vsd-ecmp-");

    // the LAN, the router, the client
    let lan = Ns::new("el");
    lan.ip(&["link", "add", "br0", "type", "bridge"]);
    lan.ip(&["link", "set", "br0", "up"]);
    let router = Ns::new("er");
    bridge_veth(&lan, "pr", &router, "eth0", None);
    router.ip(&["addr", "add", &format!("{ROUTER_LAN}/24"), "dev", "eth0"]);
    let client = Ns::new("ec");
    router.ip(&[
        "link",
        "add",
        "eth1",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &client.name,
    ]);
    no_offloads(&router, "eth1", true);
    no_offloads(&client, "eth0", true);
    router.ip(&["addr", "add", &format!("{ROUTER_CLIENT}/24"), "dev", "eth1"]);
    router.ip(&["link", "set", "eth1", "up"]);
    client.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "eth0"]);
    client.ip(&["link", "set", "eth0", "up"]);
    client.ip(&["route", "add", "default", "via", ROUTER_CLIENT]);
    // The router's multipath hash of a packet that already carries an L4
    // hash (a veth keeps the sending socket's) is that hash, and TCP picks
    // a new one for its socket at every retransmission timeout: a stalled
    // flow would hop between directors until one knew it. A router behind
    // a wire hashes the headers; a socket's hash that never changes is
    // the closest this lab gets.
    client.sysctl("net.core.txrehash=0");
    for kv in [
        "net.ipv4.ip_forward=1",
        "net.ipv4.fib_multipath_hash_policy=1",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
        // replies to the local addresses come in and go out on the LAN: no
        // redirects, or the servers would cache a director as next hop
        "net.ipv4.conf.all.send_redirects=0",
        "net.ipv4.conf.default.send_redirects=0",
        "net.ipv4.conf.eth0.send_redirects=0",
    ] {
        router.sysctl(kv);
    }
    // the router's route changes, with their times
    let monitor = Proc::spawn(
        Some(&router),
        "route-monitor",
        &files.path,
        "env",
        &["TZ=UTC", "ip", "-ts", "monitor", "route"],
    );
    // the router's BIRD, logging session changes (for the times)
    let conf = bird_config(
        "bird-router.conf",
        &[
            ("ROUTER", ROUTER_LAN.to_string()),
            ("DIRECTORS", "198.18.0.0/24".to_string()),
        ],
    )
    .replace(
        "log stderr all;",
        "log stderr all;\ndebug protocols { states, events };",
    );
    let router_bird = Bird::start(&router, &files.path, "bird-router", &conf);

    // the real servers: DR's VIP on lo, replies through the router
    let mut servers = Vec::new();
    for (k, addr) in RS.iter().enumerate() {
        let name = format!("rs{}", k + 1);
        let ns = Ns::new(&format!("es{}", k + 1));
        bridge_veth(&lan, &format!("p{}", k + 1), &ns, "eth0", Some(RS_MAC[k]));
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
        ns.ip(&["route", "add", "default", "via", ROUTER_LAN]);
        ns.ip(&["addr", "add", &format!("{VIP_DR}/32"), "dev", "lo"]);
        for dev in ["all", "eth0"] {
            ns.sysctl(&format!("net.ipv4.conf.{dev}.arp_ignore=1"));
            ns.sysctl(&format!("net.ipv4.conf.{dev}.arp_announce=2"));
            ns.sysctl(&format!("net.ipv4.conf.{dev}.accept_redirects=0"));
        }
        ns.sysctl("net.ipv4.conf.all.rp_filter=0");
        ns.sysctl("net.ipv4.conf.default.rp_filter=0");
        // (see the client)
        ns.sysctl("net.core.txrehash=0");
        let ready = files.path.join(format!("{name}.ready"));
        let mut p = Proc::spawn(
            Some(&ns),
            &name,
            &files.path,
            python3(),
            &[
                &helper("ecmp_echo.py"),
                "--name",
                &name,
                "--port",
                &VPORT.to_string(),
                "--port",
                &FULLNAT_RS_PORT.to_string(),
                "--ready",
                &ready.display().to_string(),
            ],
        );
        p.wait_ready(&ready, Duration::from_secs(20));
        servers.push((ns, p));
    }

    // the directors
    let (sync, sloppy) = (switch("VSD_ECMP_SYNC"), switch("VSD_ECMP_SLOPPY"));
    let mut dirs: Vec<Director> = (1..=n)
        .map(|i| Director::new(i, &files.path, sync, sloppy))
        .collect();
    for d in &mut dirs {
        d.start_vsd(&lan);
        let want: BTreeSet<String> = METHODS.iter().map(|(_, v)| v.to_string()).collect();
        assert!(
            wait_for(Duration::from_secs(10), || d.announced() == want),
            "d{} announces {:?}:\n{}",
            d.i,
            d.announced(),
            d.vsadm_ok(&["-L", "--announce"])
        );
        d.start_bird();
    }
    let all: Vec<usize> = (1..=n).collect();
    let mut want = vips_over(&all);
    for i in 1..=n {
        want.push((local_addr(i), [dip(i)].into()));
    }
    want.push((
        LOCAL_RANGE.to_string(),
        all.iter().map(|i| dip(*i)).collect(),
    ));
    let up = converge(
        &router,
        &router_bird,
        mono(),
        &want,
        None,
        Duration::from_secs(30),
    );
    assert!(
        up.route_s.is_some(),
        "router never showed {want:?}:\n{:?}\n{}\n{}",
        routes(&router),
        router_bird.ask("show protocols all"),
        router_bird.proc.log_text()
    );
    eprintln!("router: {:?}", routes(&router));

    // the load
    let log = files.path.join("load.log");
    let ready = files.path.join("load.ready");
    let mut load_args: Vec<String> = vec![helper("ecmp_load.py")];
    for (name, vip) in METHODS {
        load_args.push("--target".into());
        load_args.push(format!("{name}={vip}:{VPORT}"));
    }
    for a in [
        "--conns",
        &conns.to_string(),
        "--interval",
        "0.2",
        "--break-after",
        &BREAK_AFTER_S.to_string(),
        "--new-rate",
        "5",
        "--duration",
        "400",
        "--log",
        &log.display().to_string(),
        "--ready",
        &ready.display().to_string(),
    ] {
        load_args.push(a.to_string());
    }
    let argv: Vec<&str> = load_args.iter().map(String::as_str).collect();
    let mut load = Proc::spawn(Some(&client), "load", &files.path, python3(), &argv);
    load.wait_ready(&ready, Duration::from_secs(90));
    // every director knows every FULLNAT connection (sync), so any of
    // them can take any flow
    let synced = wait_for(Duration::from_secs(30), || {
        !sync || dirs.iter().all(|d| d.fullnat_established() >= conns)
    });
    assert!(
        synced,
        "FULLNAT connections per director: {:?} (want {conns})",
        dirs.iter()
            .map(Director::fullnat_established)
            .collect::<Vec<_>>()
    );

    eprintln!(
        "before the events: {}; established entries per director, DR {:?}, FULLNAT {:?}",
        at_servers(&servers),
        dirs.iter()
            .map(|d| d.established(VIP_DR))
            .collect::<Vec<_>>(),
        dirs.iter()
            .map(Director::fullnat_established)
            .collect::<Vec<_>>()
    );
    let mut events = vec![Event {
        name: "steady".into(),
        t0: mono(),
        conv: Convergence::default(),
        extra: String::new(),
    }];
    std::thread::sleep(Duration::from_secs(4));

    let last = n;
    let others: Vec<usize> = (1..n).collect();
    let logs = RouterLogs {
        monitor: &monitor.log,
        bird: &router_bird,
    };
    // wait for the router to show `want`, then take the exact times from
    // its logs
    let converged = |what: &str, t0w: f64, want: &Want, watch: Option<(&str, bool)>| {
        let name = watch.and_then(|(a, _)| logs.bgp_name(a));
        let polled = converge(
            &router,
            &router_bird,
            wall_to_mono(t0w),
            want,
            watch,
            Duration::from_secs(20),
        );
        assert!(
            polled.route_s.is_some(),
            "{what}: the router shows {:?}, not {want:?}\n{}",
            routes(&router),
            router_bird.ask("show protocols all")
        );
        let name = name.or_else(|| watch.and_then(|(a, _)| logs.bgp_name(a)));
        logs.refine(t0w, &polled, want, watch, name.as_deref())
    };

    // 1. drain the last director: its VIPs go, its local address stays
    let (t0, t0w) = (mono(), wall());
    dirs[last - 1].drain();
    let mut w = vips_over(&others);
    w.push((local_addr(last), [dip(last)].into()));
    let conv = converged("drain", t0w, &w, None);
    events.push(Event {
        name: format!("drain d{last}"),
        t0,
        conv,
        extra: String::new(),
    });
    std::thread::sleep(SETTLE);

    // 2. undrain it
    let (t0, t0w) = (mono(), wall());
    dirs[last - 1].undrain();
    let conv = converged("undrain", t0w, &vips_over(&all), None);
    events.push(Event {
        name: format!("undrain d{last}"),
        t0,
        conv,
        extra: String::new(),
    });
    std::thread::sleep(SETTLE);

    // 3. SIGKILL the first director's vsd
    let rest: Vec<usize> = (2..=n).collect();
    let d1 = dip(1);
    let mut w = vips_over(&rest);
    w.push((local_addr(1), BTreeSet::new()));
    w.push((
        LOCAL_RANGE.to_string(),
        rest.iter().map(|i| dip(*i)).collect(),
    ));
    let (t0, t0w) = (mono(), wall());
    dirs[0].kill_vsd();
    let conv = converged("kill", t0w, &w, Some((&d1, false)));
    eprintln!("after the kill: {}", at_servers(&servers));
    events.push(Event {
        name: "SIGKILL d1".into(),
        t0,
        conv,
        extra: String::new(),
    });
    std::thread::sleep(SETTLE);

    // 4. add it back: a fresh vsd learns the fleet's connections from
    // sync before its BIRD announces anything
    let t_start = mono();
    dirs[0].bird.take();
    dirs[0].start_vsd(&lan);
    let learnt = wait_for(Duration::from_secs(40), || {
        !sync || dirs[0].fullnat_established() >= conns
    });
    assert!(
        learnt,
        "the new d1 learnt {} of {conns} FULLNAT connections",
        dirs[0].fullnat_established()
    );
    let warmup = mono() - t_start;
    let mut w = vips_over(&all);
    w.push((local_addr(1), [d1.clone()].into()));
    let t0w = wall();
    dirs[0].start_bird();
    let conv = converged("add back", t0w, &w, Some((&d1, true)));
    events.push(Event {
        name: "add d1 back".into(),
        t0: t_start,
        conv,
        extra: format!("sync warm-up {warmup:.1} s, then BIRD"),
    });
    std::thread::sleep(SETTLE);

    // 5. the last director loses every real server (removed there alone):
    // it serves the VIPs no more and withdraws them; its local address
    // stays, for the replies to the connections it made
    let mut w = vips_over(&others);
    w.push((local_addr(last), [dip(last)].into()));
    let (t0, t0w) = (mono(), wall());
    for (vip, port) in [(VIP_DR, VPORT), (VIP_FULLNAT, FULLNAT_RS_PORT)] {
        for rs in RS {
            dirs[last - 1].vsadm_ok(&[
                "-d",
                "-t",
                &format!("{vip}:{VPORT}"),
                "-r",
                &format!("{rs}:{port}"),
            ]);
        }
    }
    let conv = converged("servers removed", t0w, &w, None);
    assert!(
        dirs[last - 1].announced().is_empty(),
        "d{last} still announces {:?}",
        dirs[last - 1].announced()
    );
    events.push(Event {
        name: format!("d{last} 0 servers"),
        t0,
        conv,
        extra: String::new(),
    });
    std::thread::sleep(SETTLE);
    let end = mono();

    assert!(load.alive(), "load client died:\n{}", load.log_text());
    eprintln!("at the end: {}", at_servers(&servers));
    drop(load);
    if let Ok(keep) = std::env::var("VSD_ECMP_LOG") {
        let _ = std::fs::copy(&log, &keep);
        let _ = std::fs::copy(&router_bird.proc.log, format!("{keep}.router-bird"));
        let _ = std::fs::copy(&monitor.log, format!("{keep}.router-routes"));
    }
    let entries = read_log(&log);
    for ev in &events {
        eprintln!("event {:?} at {:.3} (CLOCK_MONOTONIC)", ev.name, ev.t0);
    }
    // A BFD session that went down other than by the kill is a false
    // positive (a starved BIRD: 3 x 100 ms is tight on 2 shared CPUs). It
    // moves flows twice, harmless for synced connections but not for a
    // FULLNAT connection younger than its first sync (docs/ecmp.md): new
    // connections that fail in an event with such flaps are reported,
    // not held against vsd. Established ones must survive regardless.
    let to_mono = mono() - wall();
    let bfd_downs: Vec<f64> = router_bird
        .proc
        .log_text()
        .lines()
        .filter(|l| l.contains("changed state from Up to Down"))
        .filter_map(|l| Some(utc_secs(l.get(..23)?)? + to_mono))
        .collect();
    let flaps: Vec<usize> = events
        .iter()
        .enumerate()
        .map(|(k, ev)| {
            let next = events.get(k + 1).map_or(end, |e| e.t0);
            let downs = bfd_downs
                .iter()
                .filter(|t| **t >= ev.t0 && **t < next)
                .count();
            let expected = usize::from(ev.name.starts_with("SIGKILL"));
            downs.saturating_sub(expected)
        })
        .collect();
    eprintln!(
        "BFD sessions down at the router: {} (the kill: 1); route changes logged: {}",
        bfd_downs.len(),
        route_changes(&monitor.log).len()
    );
    let tallies = tally(&entries, &events, end);

    // the table
    eprintln!(
        "\nECMP, {n} directors, {conns} long-lived connections per method, 5 new/s per method, \
         sync {}, sloppy_tcp {}",
        if sync { "on" } else { "off" },
        if sloppy { "on" } else { "off" },
    );
    eprintln!(
        "{:<14} {:>8} {:>6} {:>6} | {:<8} {:>6} {:>10} {:>9} | note",
        "event", "route ms", "BFD ms", "BGP ms", "method", "broken", "new fail", "stall s"
    );
    for ((ev, t), flapped) in events.iter().zip(&tallies).zip(&flaps) {
        let mut note = ev.extra.clone();
        if *flapped > 0 {
            note = format!("{note} {flapped} BFD false positive(s)");
        }
        for (k, (m, _)) in METHODS.iter().enumerate() {
            let tl = t.get(*m).copied().unwrap_or_default();
            let (name, r, bfd, bgp) = if k == 0 {
                (
                    ev.name.as_str(),
                    millis(ev.conv.route_s),
                    millis(ev.conv.bfd_down_s),
                    millis(ev.conv.bgp_s),
                )
            } else {
                ("", String::new(), String::new(), String::new())
            };
            eprintln!(
                "{:<14} {:>8} {:>6} {:>6} | {:<8} {:>6} {:>4}/{:<5} {:>9.2} | {}",
                name,
                r,
                bfd,
                bgp,
                m,
                tl.broken,
                tl.new_failed,
                tl.new_ok + tl.new_failed,
                tl.max_stall_s,
                if k == 0 { note.trim() } else { "" }
            );
        }
    }
    let breaks: Vec<&Value> = entries
        .iter()
        .filter(|e| e["ev"] == "break" || (e["ev"] == "new" && e["ok"] == false))
        .collect();
    for b in breaks.iter().take(20) {
        eprintln!("  {b}");
    }
    for ((ev, t), flapped) in events.iter().zip(&tallies).zip(&flaps) {
        for (m, _) in METHODS {
            if (m == "dr" && !sloppy) || (m == "fullnat" && !sync) {
                continue;
            }
            let tl = t.get(m).copied().unwrap_or_default();
            assert_eq!(tl.broken, 0, "{}: {m} connections broke", ev.name);
            if *flapped == 0 {
                assert_eq!(tl.new_failed, 0, "{}: new {m} connections failed", ev.name);
            }
            assert!(tl.new_ok > 0, "{}: no new {m} connection at all", ev.name);
        }
    }
    drop(servers);
}

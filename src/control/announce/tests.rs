use super::*;
use crate::control::ipvsadm;
use crate::control::state::ControlState;
use std::cell::RefCell;
use std::rc::Rc;

const VIP: &str = "198.18.0.100";
const VIP2: &str = "198.18.0.101";

fn ip(a: &str) -> IpAddr {
    a.parse().unwrap()
}

fn run(s: &mut ControlState, line: &str) {
    let args: Vec<&str> = line.split_whitespace().collect();
    s.apply(&ipvsadm::parse(&args).unwrap())
        .unwrap_or_else(|e| panic!("{line}: {e}"));
}

fn facts_of(s: &ControlState) -> BTreeMap<IpAddr, VipFacts> {
    let snap = s.snapshot();
    vip_facts(&snap.services, &snap.marks)
}

// ---- the rule, as a pure function ----

#[test]
fn a_vip_is_announced_only_when_every_input_allows_it() {
    let facts = |services, available| VipFacts {
        services,
        available,
        inactive: false,
    };
    let vips: BTreeMap<IpAddr, VipFacts> = [
        (ip(VIP), facts(1, true)),
        (ip(VIP2), facts(2, false)),
        (ip("198.18.0.102"), facts(0, false)),
    ]
    .into();
    let rule = |require_healthy, workers_alive, draining| {
        decide(&RuleInputs {
            vips: &vips,
            require_healthy,
            workers_alive,
            draining,
        })
    };
    use Reason::*;
    let all = rule(true, true, false);
    assert_eq!(all[&ip(VIP)], vec![]);
    assert_eq!(all[&ip(VIP2)], vec![NoAvailableServer]);
    assert_eq!(all[&ip("198.18.0.102")], vec![NoService]);
    // require_healthy = false: a service is enough
    let lax = rule(false, true, false);
    assert_eq!(lax[&ip(VIP2)], vec![]);
    assert_eq!(lax[&ip("198.18.0.102")], vec![NoService]);
    // a stalled worker withdraws everything
    let stalled = rule(true, false, false);
    assert_eq!(stalled[&ip(VIP)], vec![WorkerStalled]);
    assert_eq!(stalled[&ip(VIP2)], vec![NoAvailableServer, WorkerStalled]);
    // so does a drain
    let drain = rule(false, true, true);
    assert!(drain.values().all(|why| why.contains(&Draining)));
    assert_eq!(drain[&ip(VIP)], vec![Draining]);
}

#[test]
fn vips_come_from_address_services_and_single_address_marks() {
    let mut s = ControlState::default();
    run(&mut s, "-A -t 198.18.0.100:80 -s rr");
    run(&mut s, "-A -u 198.18.0.100:53 -s rr");
    run(&mut s, "-A -t 198.18.0.101:80 -s rr");
    run(&mut s, "-a -t 198.18.0.101:80 -r 198.18.1.11:80 -g -w 0");
    run(&mut s, "-a -u 198.18.0.100:53 -r 198.18.1.11:53 -g -w 1");
    let f = facts_of(&s);
    assert_eq!(
        f[&ip(VIP)],
        VipFacts {
            services: 2,
            available: true,
            inactive: false
        },
        "one service with a server of weight > 0 is enough"
    );
    assert_eq!(
        f[&ip(VIP2)],
        VipFacts {
            services: 1,
            available: false,
            inactive: false
        },
        "weight 0 is not available"
    );
    // a fwmark service: the /32 of its mark rule, not a whole network
    run(&mut s, "-A -f 7 -s rr");
    run(&mut s, "-a -f 7 -r 198.18.1.12 -g");
    run(&mut s, "--add-mark --dst 198.18.0.110/32 --set-mark 7");
    run(&mut s, "--add-mark --dst 198.18.4.0/24 --set-mark 7");
    let f = facts_of(&s);
    assert!(f[&ip("198.18.0.110")].available);
    assert_eq!(f.len(), 3, "{f:?}");
}

// ---- worker liveness ----

#[test]
fn a_worker_that_does_not_turn_for_the_stall_limit_is_stalled() {
    let t0 = Instant::now();
    let ms = |n| t0 + Duration::from_millis(n);
    let mut l = WorkerLiveness::default();
    assert!(l.observe(t0, &[10, 20], &[false, false]).is_empty());
    assert!(l.observe(ms(500), &[11, 20], &[false, false]).is_empty());
    // worker 1 stuck since t0: stalled after STALL_LIMIT
    assert!(l.observe(ms(999), &[12, 20], &[false, false]).is_empty());
    assert_eq!(l.observe(ms(1000), &[13, 20], &[false, false]), vec![1]);
    // it turns again: alive at once
    assert!(l.observe(ms(1100), &[14, 21], &[false, false]).is_empty());
    // a worker whose thread ended is not alive, whatever its counter says
    assert_eq!(l.observe(ms(1150), &[15, 22], &[true, false]), vec![0]);
    // a control thread that slept long itself sees progress, not a stall
    assert!(l.observe(ms(5000), &[99, 99], &[false, false]).is_empty());
}

// ---- drain ----

#[test]
fn a_drain_is_done_without_active_connections_or_at_its_timeout() {
    let t0 = Instant::now();
    let mut d = Drain::new(t0, SystemTime::now(), Duration::from_secs(10), 5);
    assert_eq!(d.update(t0 + Duration::from_secs(1), 3), None);
    assert_eq!(
        d.update(t0 + Duration::from_secs(2), 0),
        Some(DrainEnd::NoConnections)
    );
    assert_eq!(d.update(t0 + Duration::from_secs(3), 0), None, "once");
    let mut d = Drain::new(t0, SystemTime::now(), Duration::from_secs(10), 5);
    assert_eq!(d.update(t0 + Duration::from_secs(9), 5), None);
    assert_eq!(
        d.update(t0 + Duration::from_secs(10), 4),
        Some(DrainEnd::TimedOut)
    );
    assert_eq!(d.json(t0)["done_reason"], "timeout");
}

#[test]
fn utc_time_text() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_464_862);
    assert_eq!(utc_text(t), "2026-12-05T10:01:02Z");
    assert_eq!(utc_text(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
}

// ---- the announcer over a fake kernel ----

#[derive(Default)]
struct FakeKernel {
    addrs: BTreeSet<IpAddr>,
    log: Vec<String>,
    fail_add: bool,
    closed: bool,
}

struct Fake(Rc<RefCell<FakeKernel>>, &'static str);

impl AnnounceKernel for Fake {
    fn add(&mut self, vip: IpAddr) -> Result<(), String> {
        let mut k = self.0.borrow_mut();
        if k.fail_add {
            return Err("Operation not permitted (os error 1)".into());
        }
        k.addrs.insert(vip);
        k.log.push(format!("add {vip}"));
        Ok(())
    }
    fn remove(&mut self, vip: IpAddr) -> Result<(), String> {
        let mut k = self.0.borrow_mut();
        k.addrs.remove(&vip);
        k.log.push(format!("del {vip}"));
        Ok(())
    }
    fn close(&mut self) {
        self.0.borrow_mut().closed = true;
    }
    fn iface(&self) -> &str {
        self.1
    }
}

fn conf() -> AnnounceConf {
    AnnounceConf {
        interface: "vip0".into(),
        drain_timeout: Duration::from_secs(300),
        require_healthy: true,
        kind: Default::default(),
    }
}

struct Rig {
    state: ControlState,
    kernel: Rc<RefCell<FakeKernel>>,
    a: Announcer,
    t: Instant,
    turns: u64,
    active: u64,
    inactive: Vec<IpAddr>,
}

impl Rig {
    fn new() -> Rig {
        let kernel = Rc::new(RefCell::new(FakeKernel::default()));
        let a = Announcer::new(conf(), Box::new(Fake(kernel.clone(), "vip0")));
        Rig {
            state: ControlState::default(),
            kernel,
            a,
            t: Instant::now(),
            turns: 0,
            active: 0,
            inactive: Vec::new(),
        }
    }
    /// 100 ms later, workers turning.
    fn eval(&mut self) -> bool {
        self.t += Duration::from_millis(100);
        self.turns += 1000;
        let snap = self.state.snapshot();
        let turns = [self.turns];
        self.a.evaluate(
            self.t,
            &PlaneFacts {
                services: &snap.services,
                marks: &snap.marks,
                loop_turns: &turns,
                finished: &[false],
                active_conns: self.active,
                inactive_vips: &self.inactive,
            },
        )
    }
    fn on(&self) -> Vec<String> {
        self.kernel
            .borrow()
            .addrs
            .iter()
            .map(|a| a.to_string())
            .collect()
    }
    fn listing(&self) -> String {
        render(Some(&self.a.json(self.t)))
    }
}

#[test]
fn the_interface_follows_the_table() {
    let mut r = Rig::new();
    run(&mut r.state, "-A -t 198.18.0.100:80 -s rr");
    assert!(!r.eval(), "a service without servers stays withdrawn");
    assert!(r.listing().contains("198.18.0.100"));
    assert!(
        r.listing().contains("withdrawn  no available real server"),
        "{}",
        r.listing()
    );
    run(&mut r.state, "-a -t 198.18.0.100:80 -r 198.18.1.11:80 -g");
    assert!(r.eval());
    assert_eq!(r.on(), [VIP]);
    assert!(r.a.is_announced(ip(VIP)));
    run(
        &mut r.state,
        "-e -t 198.18.0.100:80 -r 198.18.1.11:80 -g -w 0",
    );
    assert!(r.eval());
    assert!(r.on().is_empty(), "weight 0: withdrawn");
    run(
        &mut r.state,
        "-e -t 198.18.0.100:80 -r 198.18.1.11:80 -g -w 3",
    );
    r.eval();
    assert_eq!(r.on(), [VIP]);
    run(&mut r.state, "-D -t 198.18.0.100:80");
    r.eval();
    assert!(r.on().is_empty());
    assert!(
        r.listing().contains("withdrawn  no service"),
        "{}",
        r.listing()
    );
    assert_eq!(
        r.kernel.borrow().log,
        [
            "del 198.18.0.100", // first evaluation: clean what a killed vsd left
            "add 198.18.0.100",
            "del 198.18.0.100",
            "add 198.18.0.100",
            "del 198.18.0.100"
        ]
    );
}

#[test]
fn a_stalled_worker_withdraws_everything_until_it_turns_again() {
    let mut r = Rig::new();
    run(&mut r.state, "-A -t 198.18.0.100:80 -s rr");
    run(&mut r.state, "-a -t 198.18.0.100:80 -r 198.18.1.11:80 -g");
    r.eval();
    assert_eq!(r.on(), [VIP]);
    // the worker stops turning
    let snap = r.state.snapshot();
    let stuck = [r.turns];
    let facts = PlaneFacts {
        services: &snap.services,
        marks: &snap.marks,
        loop_turns: &stuck,
        finished: &[false],
        active_conns: 0,
        inactive_vips: &[],
    };
    r.a.evaluate(r.t + Duration::from_millis(900), &facts);
    assert_eq!(r.on(), [VIP], "not yet");
    r.a.evaluate(r.t + Duration::from_millis(1100), &facts);
    assert!(r.on().is_empty());
    r.t += Duration::from_millis(1100);
    let text = r.listing();
    assert!(text.contains("withdrawn  worker stalled"), "{text}");
    assert!(text.contains("Workers: 1 stalled ([0])"), "{text}");
    r.eval();
    assert_eq!(r.on(), [VIP], "turning again");
}

#[test]
fn drain_withdraws_reports_and_undrain_announces_again() {
    let mut r = Rig::new();
    run(&mut r.state, "-A -t 198.18.0.100:80 -s rr");
    run(&mut r.state, "-a -t 198.18.0.100:80 -r 198.18.1.11:80 -g");
    r.active = 2;
    r.eval();
    let reply = r.a.start_drain(r.t, SystemTime::now(), None, 2);
    assert!(
        reply.starts_with("draining: every VIP withdrawn from vip0"),
        "{reply}"
    );
    r.eval();
    assert!(r.on().is_empty());
    let text = r.listing();
    assert!(text.contains("withdrawn  draining"), "{text}");
    assert!(
        text.contains("2 active connections left, timeout 300s, not done"),
        "{text}"
    );
    let metrics = render_prometheus(&r.a.json(r.t));
    assert!(metrics.contains("vsd_vip_announced{vip=\"198.18.0.100\"} 0\n"));
    assert!(metrics.contains("vsd_director_draining 1\n"));
    assert!(metrics.contains("vsd_director_drained 0\n"));
    // connections end: done (and still withdrawn)
    r.active = 0;
    r.eval();
    let text = r.listing();
    assert!(
        text.contains("done (no active connections after 0s)"),
        "{text}"
    );
    assert!(render_prometheus(&r.a.json(r.t)).contains("vsd_director_drained 1\n"));
    assert!(r.on().is_empty());
    // a second --drain keeps the drain, with the new timeout
    assert!(r
        .a
        .start_drain(r.t, SystemTime::now(), Some(Duration::from_secs(5)), 0)
        .starts_with("already draining since"));
    assert_eq!(r.a.drain().unwrap().timeout, Duration::from_secs(5));
    assert_eq!(
        r.a.end_drain(),
        "undrained: VIPs are announced again as the rule allows\n"
    );
    r.eval();
    assert_eq!(r.on(), [VIP]);
    assert!(r.listing().contains("Drain: not draining"));
    let metrics = render_prometheus(&r.a.json(r.t));
    assert!(metrics.contains("vsd_vip_announced{vip=\"198.18.0.100\"} 1\n"));
    assert!(metrics.contains("vsd_director_draining 0\n"));
    assert_eq!(r.a.end_drain(), "not draining\n");
}

#[test]
fn a_drain_times_out() {
    let mut r = Rig::new();
    run(&mut r.state, "-A -t 198.18.0.100:80 -s rr");
    r.active = 7;
    r.a.start_drain(r.t, SystemTime::now(), Some(Duration::from_secs(1)), 7);
    for _ in 0..9 {
        r.eval();
    }
    assert!(r.listing().contains("not done"));
    r.eval();
    let text = r.listing();
    assert!(text.contains("7 active connections left"), "{text}");
    assert!(text.contains("done (timeout expired after 1s)"), "{text}");
}

#[test]
fn failures_are_shown_and_retried_and_shutdown_cleans_up() {
    let mut r = Rig::new();
    run(&mut r.state, "-A -t 198.18.0.100:80 -s rr");
    run(&mut r.state, "-a -t 198.18.0.100:80 -r 198.18.1.11:80 -g");
    r.kernel.borrow_mut().fail_add = true;
    r.eval();
    assert!(r.on().is_empty());
    let text = r.listing();
    assert!(
        text.contains("withdrawn  error: Operation not permitted"),
        "{text}"
    );
    r.kernel.borrow_mut().fail_add = false;
    r.eval();
    assert_eq!(r.on(), [VIP], "retried");
    r.a.shutdown();
    assert!(r.on().is_empty());
    assert!(r.kernel.borrow().closed);
}

#[test]
fn an_interface_change_moves_the_vips() {
    let mut r = Rig::new();
    run(&mut r.state, "-A -t 198.18.0.100:80 -s rr");
    run(&mut r.state, "-a -t 198.18.0.100:80 -r 198.18.1.11:80 -g");
    r.eval();
    let new = Rc::new(RefCell::new(FakeKernel::default()));
    let mut c = conf();
    c.interface = "vip1".into();
    r.a.reconfigure(c, Some(Box::new(Fake(new.clone(), "vip1"))));
    assert!(r.on().is_empty(), "gone from the old interface");
    assert!(r.kernel.borrow().closed);
    r.eval();
    assert_eq!(new.borrow().addrs.len(), 1);
    assert!(r.listing().starts_with("Announce interface vip1"));
}

#[test]
fn listing_without_announce() {
    assert_eq!(
        render(None),
        "Announce: off (no [announce] in the configuration)\n"
    );
}

#[test]
fn configured_vips_are_listed_and_inactive_followed_vips_withdrawn() {
    let mut r = Rig::new();
    r.a.remember([ip(VIP2)]);
    run(&mut r.state, "-A -t 198.18.0.100:80 -s rr");
    run(&mut r.state, "-a -t 198.18.0.100:80 -r 198.18.1.11:80 -g");
    r.eval();
    let text = r.listing();
    assert!(text.contains("198.18.0.101"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("198.18.0.101") && l.ends_with("withdrawn  no service")),
        "{text}"
    );
    // a [[vip]] follow VIP keepalived has not put on its interface
    r.inactive = vec![ip(VIP)];
    r.eval();
    assert!(r.on().is_empty());
    assert!(
        r.listing().contains("withdrawn  vip inactive (follow)"),
        "{}",
        r.listing()
    );
    r.inactive.clear();
    r.eval();
    assert_eq!(r.on(), [VIP]);
}

//! IPVS core benchmark: connection table and schedulers, one core, no DPDK.
//! Run: `cargo bench --bench lb_core` (add `-- --quick` for a short run;
//! name sections to run only those: `-- --quick fwd`; sections: conn,
//! sched, fwd, synproxy, sync, laddr, martian, newconn). `--family 6`: the
//! fwd section over IPv6; `--flows 1000,1000000 --method nat --packets N
//! --burst-only` narrow it (for `valgrind --tool=cachegrind` runs).
//! `newconn --only fullnat-rr-4`: one configuration.

#[path = "lb_core/conn.rs"]
mod conn;
#[path = "lb_core/fwd.rs"]
mod fwd;
#[path = "lb_core/laddr.rs"]
mod laddr;
#[path = "lb_core/martian.rs"]
mod martian;
#[path = "lb_core/newconn.rs"]
mod newconn;
#[path = "lb_core/sched.rs"]
mod sched;
#[path = "lb_core/sync.rs"]
mod sync;
#[path = "lb_core/synproxy.rs"]
mod synproxy;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let named: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| {
            matches!(
                *a,
                "conn" | "sched" | "fwd" | "synproxy" | "sync" | "laddr" | "martian" | "newconn"
            )
        })
        .collect();
    let wanted = |s: &str| named.is_empty() || named.contains(&s);
    if wanted("conn") {
        conn::run(quick);
    }
    if wanted("sched") {
        sched::run(quick);
    }
    if wanted("fwd") {
        let v6 = args.windows(2).any(|w| w[0] == "--family" && w[1] == "6");
        let opts = fwd::Options::parse(&args);
        let fam = if v6 { fwd::Family::V6 } else { fwd::Family::V4 };
        fwd::run(quick, fam, &opts);
    }
    if wanted("synproxy") {
        synproxy::run(quick);
    }
    if wanted("sync") {
        sync::run(quick);
    }
    if wanted("laddr") {
        laddr::run(quick);
    }
    if wanted("martian") {
        martian::run(quick);
    }
    if wanted("newconn") {
        newconn::run(quick, &args);
    }
}

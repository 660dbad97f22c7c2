//! IPVS core benchmark: connection table and schedulers, one core, no DPDK.
//! Run: `cargo bench --bench lb_core` (add `-- --quick` for a short run).

#[path = "lb_core/conn.rs"]
mod conn;
#[path = "lb_core/fwd.rs"]
mod fwd;
#[path = "lb_core/sched.rs"]
mod sched;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    conn::run(quick);
    sched::run(quick);
    fwd::run(quick);
}

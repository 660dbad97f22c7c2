//! vsd: the director daemon. All the work is in `vsd::daemon`.

use clap::Parser;
use std::process::ExitCode;
use vsd::cli::VsdArgs;

fn main() -> ExitCode {
    let args = VsdArgs::parse();
    if let Err(e) = vsd::logging::init(args.log_level.as_deref()) {
        eprintln!("vsd: {e}");
        return ExitCode::from(2);
    }
    let cfg = match vsd::control::config::Config::load(&args.config, args.keepalived.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(2);
        }
    };
    if args.boot_plan {
        print!("{}", vsd::control::bootplan::boot_plan(&cfg));
        return ExitCode::SUCCESS;
    }
    for w in &cfg.warnings {
        log::warn!("{w}");
    }
    // Legal for EAL but costly: say so before anything runs.
    for w in vsd::control::cpumap::pinning_warnings(&cfg.lcores) {
        log::warn!("{w}");
    }
    if args.check {
        // what the control plane would refuse at start (IPv6 services, ...)
        if let Err(e) = vsd::control::state::ControlState::from_config(&cfg) {
            log::error!("{}: {e}", args.config.display());
            return ExitCode::from(2);
        }
        if let Err(e) = vsd::daemon::check(&cfg) {
            log::error!("{e}");
            return ExitCode::from(1);
        }
        match &args.keepalived {
            Some(k) => println!(
                "configuration OK: {} + {} ({} services)",
                args.config.display(),
                k.display(),
                cfg.services.len()
            ),
            None => println!("configuration OK: {}", args.config.display()),
        }
        println!("EAL arguments: {}", cfg.eal_argv("vsd").join(" "));
        return ExitCode::SUCCESS;
    }
    match vsd::daemon::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(1)
        }
    }
}

//! vsadm: drives a running vsd over its control socket.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = vsd::control::vsadm::Args::parse();
    match vsd::control::vsadm::run(&args, &mut std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vsadm: {e}");
            ExitCode::from(2)
        }
    }
}

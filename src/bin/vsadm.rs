//! vsadm: drives a running vsd over its control socket, with ipvsadm's syntax.

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    vsd::control::vsadm::main_with(&argv)
}

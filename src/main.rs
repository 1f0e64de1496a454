//! `verinfer`: the one command-line entry point (thin over the `verinfer` library).

fn main() -> std::process::ExitCode {
    verinfer::cli::run()
}

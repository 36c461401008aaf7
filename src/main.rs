//! The `djaudit` command: parses arguments, runs the command, maps errors to exit codes
//! (0 success, 1 a negative answer, 2 usage or input error, 3 storage or internal error).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}

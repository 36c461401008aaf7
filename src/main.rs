//! The `djaudit` command: parses arguments, runs the command, maps errors to exit codes
//! (0 success, 1 a negative answer, 2 usage or input error, 3 storage or internal error).

mod cli;

/// mimalloc rather than the system allocator: during large imports SQLite's page cache
/// fragments the glibc heap and every small allocation then pays for it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}

//! The `jobwarden` command: parses arguments, calls the library, renders
//! results and maps them to exit codes. Nothing else lives here.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}

//! The command-line client (placeholder until the CLI lands).
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}

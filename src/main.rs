//! The `paraph` binary: parse the command line, set up logging, dispatch.
fn main() -> std::process::ExitCode {
    paraph::client::main()
}

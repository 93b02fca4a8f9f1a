//! `paraph api`: what integrators need to call the API from other languages, offline (no
//! server, no token). `api descriptor` writes the FileDescriptorSet of `proto/` (package
//! `paraph.v1` with its imports and comments), compiled into the binary by the build, so that
//! gateways, reflection-less tools and other languages' code generators can load the API
//! without `protoc`.

use super::error::CliError;
use clap::{Args, Subcommand};
use std::io::Write as _;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ApiCommand {
    /// Write the API's descriptor set (a binary FileDescriptorSet of package paraph.v1, with
    /// comments), e.g. `paraph api descriptor --out paraph.v1.binpb`.
    Descriptor(DescriptorArgs),
}

#[derive(Args)]
pub struct DescriptorArgs {
    /// File to write (`-`: standard output).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Runs an `api` command.
pub fn run(command: ApiCommand) -> Result<(), CliError> {
    match command {
        ApiCommand::Descriptor(a) => descriptor(&a),
    }
}

fn descriptor(a: &DescriptorArgs) -> Result<(), CliError> {
    let bytes = crate::proto::FILE_DESCRIPTOR_SET;
    if a.out.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        return out
            .write_all(bytes)
            .and_then(|()| out.flush())
            .map_err(|e| CliError::Local(format!("cannot write the descriptor set: {e}")));
    }
    std::fs::write(&a.out, bytes).map_err(|e| {
        CliError::Local(format!(
            "cannot write the descriptor set to {}: {e}",
            a.out.display()
        ))
    })?;
    eprintln_text!(
        "wrote {} ({} bytes): the FileDescriptorSet of package paraph.v1",
        a.out.display(),
        bytes.len()
    );
    Ok(())
}

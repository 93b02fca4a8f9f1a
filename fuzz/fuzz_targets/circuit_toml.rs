//! Circuit definition files (`paraph circuit create --file`): TOML text to a creation request,
//! then the server's conversion of that request into a circuit specification.
#![no_main]
use libfuzzer_sys::fuzz_target;
use paraph::domain::CircuitSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(req) = paraph::client::circuit_file::parse(text) {
        let _ = CircuitSpec::try_from(req);
    }
});

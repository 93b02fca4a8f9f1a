//! Step conditions as a circuit definition carries them: parse, then evaluate against
//! metadata made of the same bytes (errors are fine, panics are not).
#![no_main]
use libfuzzer_sys::fuzz_target;
use paraph::domain::Condition;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = Condition::parse(text) else {
        return;
    };
    let _ = c.fields();
    let mut meta = BTreeMap::new();
    for f in c.fields() {
        meta.insert(f, text.chars().take(40).collect::<String>());
    }
    let _ = c.evaluate(&meta);
    // The serialized form parses back to the same condition.
    assert_eq!(Condition::parse(c.source()).ok(), Some(c));
});

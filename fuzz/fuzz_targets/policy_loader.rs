//! The policy loader and validator on arbitrary bytes: every input is
//! either a policy or a report whose rendering points inside the source.
#![no_main]

use jobwarden::policy::{LoadError, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Policy::from_toml("fuzz.toml", &text) {
        Ok(loaded) => {
            // A valid policy renders its warnings and explains itself.
            let _ = loaded.warnings.to_string();
            let _ = format!("{:?}", loaded.policy.plugins.keys().collect::<Vec<_>>());
        }
        Err(LoadError::Invalid(report)) => {
            let rendered = report.to_string();
            assert!(!rendered.is_empty());
        }
        Err(other) => {
            let _ = other.to_string();
        }
    }
});

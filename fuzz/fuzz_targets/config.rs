//! The configuration parser on arbitrary text: a `Config` or a `ConfigError`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = switchyard_config::parse(text, Path::new("fuzz.toml")) {
        // Rendering the error walks every problem and its location.
        let _ = e.to_string();
    }
});

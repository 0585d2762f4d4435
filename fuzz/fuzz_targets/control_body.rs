//! Every JSON body the control API accepts, decoded and validated as its handler does: an
//! `ApiError` or acceptance, never a panic. The first byte picks the body kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_control::{BodyKind, check_body};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let kind = BodyKind::ALL[usize::from(pick) % BodyKind::ALL.len()];
    if let Err(e) = check_body(kind, body) {
        let _ = e.to_string();
    }
});

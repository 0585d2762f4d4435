//! The HTTP/1 framing watcher (`proxy/src/sniff.rs`) on arbitrary client bytes: it must not
//! panic, and its conclusion must not depend on how the bytes are split into reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_proxy::watch_framing;

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let whole = watch_framing([bytes]);
    let chunked = watch_framing(bytes.chunks(usize::from(split).max(1)));
    assert_eq!(whole, chunked, "split into reads of {split} bytes");
    let bytewise = watch_framing(bytes.chunks(1));
    assert_eq!(whole, bytewise, "split into single bytes");
});

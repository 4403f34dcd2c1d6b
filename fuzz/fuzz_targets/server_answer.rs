//! `wire::parse_server_answer` on arbitrary bytes: never panics, and an answer it has
//! decided (anything but `Incomplete`) does not change when more bytes arrive, which is what
//! the probe relies on when it stops reading at the first decided answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tls_fallback::wire::{parse_server_answer, ServerAnswer};

fuzz_target!(|data: &[u8]| {
    let full = parse_server_answer(data);
    if data.is_empty() {
        return;
    }
    // Every prefix would be slow on large inputs; check a spread of cut points.
    let step = (data.len() / 64).max(1);
    for cut in (0..data.len()).step_by(step) {
        let early = parse_server_answer(&data[..cut]);
        if early != ServerAnswer::Incomplete {
            assert_eq!(
                early, full,
                "decided {early:?} on {cut} bytes but {full:?} on all {}",
                data.len()
            );
        }
    }
});

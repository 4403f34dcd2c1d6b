//! `wire::parse_client_hello` (and the handshake reassembly and message parser under it) on
//! arbitrary bytes: never panics, never reports more than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tls_fallback::wire::{parse_client_hello, parse_handshake, reassemble_handshake, MAX_HELLO};

fuzz_target!(|data: &[u8]| {
    if let Ok(hello) = parse_client_hello(data) {
        assert!(hello.hello_len <= MAX_HELLO);
        assert!(hello.hello_len + 5 <= data.len(), "hello longer than its input");
        assert!(hello.cipher_count * 2 <= hello.hello_len);
    }
    if let Ok((msg, _, used)) = reassemble_handshake(data) {
        assert!(used <= data.len());
        assert!(msg.len() <= used);
    }
    // The message parser alone, as if the bytes were one reassembled handshake message.
    let _ = parse_handshake(data, 0x0301);
});

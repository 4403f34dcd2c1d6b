//! The decision-file reader on arbitrary bytes: `FileStore::parse` never panics; an accepted
//! file holds only values within the limits and keys that are already normalised; every cut
//! of an accepted file is refused or parses (a truncated file never panics). The file-system
//! cases (a symbolic link, a FIFO, an oversize file) are in `tests/decision_file.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tls_fallback::{FileStore, HostKey};

fuzz_target!(|data: &[u8]| {
    match FileStore::parse(data) {
        Ok(entries) => {
            for (key, decision) in &entries {
                assert!(decision.profile.len() <= FileStore::MAX_VALUE_BYTES);
                assert!(decision.reason.len() <= FileStore::MAX_VALUE_BYTES);
                assert_eq!(&HostKey::new(key.host(), key.port()), key);
            }
            for cut in [data.len() / 2, data.len().saturating_sub(1)] {
                if let Err(e) = FileStore::parse(&data[..cut]) {
                    assert!(!e.is_empty());
                }
            }
        }
        Err(e) => assert!(!e.is_empty(), "a refusal says why"),
    }
});

//! The policy parsers on arbitrary text: `HostPattern::from_str` and `policy::parse_pin` never
//! panic, an accepted pattern's display form parses again to the same pattern, and matching it
//! against arbitrary host names never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tls_fallback::policy::parse_pin;
use tls_fallback::HostPattern;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // "pattern\nhost" tries a pattern against a host; a lone line is only parsed.
    let (pattern, host) = text.split_once('\n').unwrap_or((text, "example.com"));
    if let Ok(p) = pattern.parse::<HostPattern>() {
        let again: HostPattern = p
            .to_string()
            .parse()
            .expect("the display form of an accepted pattern parses again");
        assert_eq!(again, p);
        for port in [1, 443, 65535] {
            let _ = p.matches(host, port);
        }
        let _ = p.matches(pattern, 443);
    }
    if let Ok((p, _version)) = parse_pin(pattern) {
        let _ = p.matches(host, 443);
    }
});

use super::*;

/// A record with a hello offering supported_versions [1.3, 1.2] and SNI.
fn hello_with_versions() -> Vec<u8> {
    let mut exts = Vec::new();
    exts.extend_from_slice(&[0, 43, 0, 5, 4, 3, 4, 3, 3]);
    exts.extend_from_slice(&[0, 0, 0, 8, 0, 6, 0, 0, 3, b'a', b'.', b'b']);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[9; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut msg = vec![1, 0, 0, body.len() as u8];
    msg.extend_from_slice(&body);
    let mut rec = vec![22, 3, 1, 0, msg.len() as u8];
    rec.extend_from_slice(&msg);
    rec
}

#[test]
fn stripping_supported_versions_leaves_a_valid_tls12_hello() {
    let before = wire::parse_client_hello(&hello_with_versions()).unwrap();
    assert_eq!(before.offered_max, 0x0304);
    let after = strip_supported_versions(&hello_with_versions()).unwrap();
    let parsed = wire::parse_client_hello(&after).unwrap();
    assert_eq!(parsed.supported_versions, None);
    assert_eq!(parsed.offered_max, 0x0303);
    assert_eq!(parsed.extensions, vec![0]);
    assert_eq!(parsed.sni.as_deref(), Some("a.b"));
    assert_eq!(parsed.hello_len, before.hello_len - 9);
}

#[test]
fn stripping_scsv_leaves_the_other_suites_and_extensions() {
    let mut hello = hello_with_versions();
    // Suites [0x1301] -> [0x1301, 0x5600]: two more bytes in three lengths.
    let at = 5 + 4 + 2 + 32 + 1;
    hello.splice(at..at + 4, [0, 4, 0x13, 0x01, 0x56, 0x00]);
    hello[4] += 2;
    hello[8] += 2;
    let before = wire::parse_client_hello(&hello).unwrap();
    assert!(before.scsv);
    let after = wire::parse_client_hello(&rewrite_hello(&hello, Strip::Scsv).unwrap()).unwrap();
    assert!(!after.scsv);
    assert_eq!(after.cipher_count, before.cipher_count - 1);
    assert_eq!(after.offered_max, 0x0304);
    assert_eq!(after.sni.as_deref(), Some("a.b"));
}

#[test]
fn stripping_garbage_gives_none_not_a_panic() {
    let good = hello_with_versions();
    for n in 0..good.len() {
        assert_eq!(strip_supported_versions(&good[..n]), None, "prefix {n}");
    }
    assert_eq!(strip_supported_versions(b"GET / HTTP/1.1\r\n\r\n"), None);
}

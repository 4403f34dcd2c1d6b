//! Cutting hellos into fields: every hello the probe builds, notes, garbage, fuzzing.

use super::*;
use crate::probe::hello::{FALLBACK_SCSV, TLS10, TLS12};

#[test]
fn a_tls13_hello_is_cut_into_named_fields_in_wire_order() {
    let record = rec(&spec13());
    let fields = hello_fields(&record);
    assert_tiles(&record, &fields);
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "record header",
            "handshake header",
            "legacy_version",
            "random",
            "session id",
            "cipher suites",
            "compression methods",
            "extensions length",
            "extension server_name (0)",
            "extension ec_point_formats (11)",
            "extension supported_groups (10)",
            "extension signature_algorithms (13)",
            "extension extended_master_secret (23)",
            "extension supported_versions (43)",
            "extension psk_key_exchange_modes (45)",
            "extension key_share (51)",
        ]
    );
    let len = record.len() - 5;
    let rows = [
        (
            "record header",
            format!("handshake, version 1.0, length {len}"),
        ),
        (
            "handshake header",
            format!("client_hello, length {}", len - 4),
        ),
        ("legacy_version", "1.2".into()),
        ("random", "32 bytes, new in every test".into()),
        ("session id", "empty".into()),
        (
            "cipher suites",
            "20 suites: 3 TLS 1.3, TLS_EMPTY_RENEGOTIATION_INFO_SCSV".into(),
        ),
        ("compression methods", "null".into()),
        ("extension server_name (0)", "example.com".into()),
        ("extension ec_point_formats (11)", "uncompressed".into()),
        (
            "extension supported_groups (10)",
            "x25519, secp256r1, secp384r1".into(),
        ),
        (
            "extension signature_algorithms (13)",
            "10 algorithms".into(),
        ),
        ("extension extended_master_secret (23)", "empty".into()),
        (
            "extension supported_versions (43)",
            "TLS 1.3, 1.2, 1.1, 1.0".into(),
        ),
        ("extension psk_key_exchange_modes (45)", "psk_dhe_ke".into()),
        ("extension key_share (51)", "x25519 (32 bytes)".into()),
    ];
    for (name, want) in rows {
        assert_eq!(note(&fields, name), want, "{name}");
    }
    assert_eq!(fields[3].kind, FieldKind::Random);
    assert_eq!(fields[15].kind, FieldKind::Extension(51));
}

#[test]
fn every_hello_the_probe_builds_parses_without_leftovers() {
    let sni = Some("gateway.example".to_string());
    let mut specs = vec![
        HelloSpec::legacy(TLS10, sni.clone()),
        HelloSpec::legacy(TLS12, None),
        HelloSpec::legacy(0x0398, sni.clone()),
        HelloSpec::with_supported_versions(vec![TLS13], sni.clone()),
    ];
    for pad in [300, 512, 1550] {
        let mut s = spec13();
        s.pad_to = Some(pad);
        specs.push(s);
    }
    let mut s = spec13();
    s.unknown_extension = Some(0x7a7a);
    s.cipher_suites.extend(0x7a00..0x7a90);
    s.cipher_suites.push(FALLBACK_SCSV);
    specs.push(s);
    for spec in specs {
        let record = rec(&spec);
        let fields = hello_fields(&record);
        assert_tiles(&record, &fields);
        assert!(
            fields.iter().all(|f| f.kind != FieldKind::Unparsed),
            "{spec:?}"
        );
    }
}

#[test]
fn notes_name_padding_post_quantum_shares_unknown_and_grease_values() {
    let mut s = spec13();
    s.pad_to = Some(1550);
    s.unknown_extension = Some(0x7a7a);
    let fields = hello_fields(&rec(&s));
    let pad = fields.iter().find(|f| f.kind == FieldKind::Extension(21));
    let pad = pad.map(|f| (f.name.as_str(), f.note.clone()));
    let want = 1550 - s.natural_len() - 4;
    assert_eq!(
        pad,
        Some(("extension padding (21)", format!("{want} bytes")))
    );
    // The probe's "unknown" extension is 0x7a7a, a value RFC 8701 reserves for GREASE.
    assert_eq!(
        note(&fields, "extension GREASE (0x7a7a)"),
        "4 bytes of data"
    );

    let pq = hello_fields(&pq_record());
    assert_eq!(
        note(&pq, "extension key_share (51)"),
        "X25519MLKEM768 (1216 bytes), x25519 (32 bytes)"
    );
    assert_eq!(
        note(&pq, "extension supported_groups (10)"),
        "X25519MLKEM768, x25519"
    );

    let odd = hand_record(
        &[0x0a0a, 0x1301, FALLBACK_SCSV],
        &[
            (0x2a2a, vec![]),
            (43, vec![4, 0x3a, 0x3a, 0x03, 0x04]),
            (0xff01, vec![0]),
            (21, vec![0, 1]),
            (0, vec![0, 6, 0, 0, 3, b'a', b'\n', b'<']),
            (51, vec![0, 9]), // list longer than the data
        ],
    );
    let fields = hello_fields(&odd);
    assert_tiles(&odd, &fields);
    let rows = [
        (
            "cipher suites",
            "3 suites: 1 TLS 1.3, 1 GREASE, TLS_FALLBACK_SCSV",
        ),
        ("extension GREASE (0x2a2a)", "empty"),
        ("extension supported_versions (43)", "TLS GREASE, 1.3"),
        (
            "extension renegotiation_info (65281)",
            "empty (initial handshake)",
        ),
        ("extension padding (21)", "2 bytes, not all zero"),
        ("extension server_name (0)", "a\\x0a<"),
        ("extension key_share (51)", "malformed, 2 bytes of data"),
    ];
    for (name, want) in rows {
        assert_eq!(note(&fields, name), want, "{name}");
    }
}

#[test]
fn garbage_and_truncated_input_end_in_one_unparsed_field_saying_why() {
    let good = rec(&spec13());
    let mut trailing = good.clone();
    trailing.extend([0x17, 0x03]);
    let mut fragmented = good.clone();
    fragmented[4] -= 10; // the record ends 10 bytes before the handshake message
    let mut short_ext_len = good.clone();
    let at = hello_fields(&good)
        .iter()
        .find(|f| f.kind == FieldKind::ExtensionsLength)
        .map_or(0, |f| f.start);
    short_ext_len[at + 1] -= 5;
    // The last extension (key_share, 42 bytes) left out of the extensions length.
    let mut ext_len_short_by_one_extension = good.clone();
    ext_len_short_by_one_extension[at + 1] -= 42;
    let rows: [(&str, &[u8], &str); 9] = [
        ("empty", &[], "record header needs 5 bytes, 0 left"),
        (
            "alert record",
            &[21, 3, 3, 0, 2, 2, 40],
            "not a handshake record",
        ),
        (
            "server hello",
            &[22, 3, 3, 0, 4, 2, 0, 0, 0],
            "not a ClientHello",
        ),
        (
            "cut in random",
            &good[..20],
            "random needs 32 bytes, 9 left",
        ),
        (
            "trailing",
            &trailing,
            "2 bytes: bytes after the end of the ClientHello",
        ),
        (
            "fragmented",
            &fragmented,
            "continues past this record (10 more bytes declared)",
        ),
        (
            "short ext len",
            &short_ext_len,
            "key_share (51) needs 42 bytes, 37 left",
        ),
        (
            "extensions length short by one extension",
            &ext_len_short_by_one_extension,
            "42 bytes: the extensions length is shorter than the message",
        ),
        (
            "cut at a boundary",
            &good[..43],
            "session id length is cut short",
        ),
    ];
    for (what, input, why) in rows {
        let fields = hello_fields(input);
        assert_tiles(input, &fields);
        let last = fields.last().expect("at least the unparsed field");
        assert_eq!(last.kind, FieldKind::Unparsed, "{what}");
        assert!(last.note.contains(why), "{what}: {}", last.note);
        let unparsed = fields
            .iter()
            .filter(|f| f.kind == FieldKind::Unparsed)
            .count();
        assert_eq!(unparsed, 1, "{what}");
    }
}

#[test]
fn a_repeated_extension_gets_a_numbered_name() {
    let r = hand_record(
        &[0x1301],
        &[(0x1234, vec![1]), (0x1234, vec![2]), (0x1234, vec![])],
    );
    let names: Vec<String> = hello_fields(&r).into_iter().map(|f| f.name).collect();
    assert_eq!(
        names[8..],
        [
            "extension unknown (0x1234)",
            "extension unknown (0x1234) #2",
            "extension unknown (0x1234) #3"
        ]
    );
}

#[test]
fn fields_serialize_with_hex_bytes() {
    let fields = hello_fields(&[22, 3, 1, 0, 0]);
    let json = serde_json::to_value(&fields[0]).unwrap_or_default();
    assert_eq!(json["bytes"], "1603010000");
    assert_eq!(json["kind"], "record_header");
    let ext = hello_fields(&x25519_record());
    let json = serde_json::to_value(ext.last()).unwrap_or_default();
    assert_eq!(json["kind"], "extension");
    assert_eq!(json["type"], 51);
}

/// xorshift64*: deterministic noise for the no-panic tests.
fn noise(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn random_and_mutated_bytes_never_panic_and_always_tile() {
    let base = rec(&spec13());
    let mut s = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..4000 {
        let input: Vec<u8> = if i % 2 == 0 {
            let n = (noise(&mut s) % 600) as usize;
            (0..n).map(|_| noise(&mut s) as u8).collect()
        } else {
            let mut m = base.clone();
            for _ in 0..1 + noise(&mut s) % 4 {
                let at = (noise(&mut s) as usize) % m.len();
                m[at] = noise(&mut s) as u8;
            }
            m.truncate((noise(&mut s) as usize) % (m.len() + 1));
            m
        };
        let fields = hello_fields(&input);
        assert_tiles(&input, &fields);
        let diff = hello_diff(&input, &base);
        hex_dump(&input, &diff.failing_highlights());
        assert_eq!(closest_passing(&base, &[&input]), Some(0));
    }
}

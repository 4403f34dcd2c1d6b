//! The evidence functions, row by row: fields of every hello the probe sends, garbage and
//! truncation, the diff sentences, the closest passing hello, the dump, the commands (run
//! through a real `sh` to prove a hostile name stays one argument) and the known bugs.

use std::net::SocketAddr;

use super::*;
use crate::probe::hello::{build_client_hello, HelloSpec, FALLBACK_SCSV, TLS10, TLS12, TLS13};
use crate::probe::{TestId, TestOutcome, WireVersion};
use crate::TlsVersion;

fn spec13() -> HelloSpec {
    HelloSpec::up_to(TLS13, Some("example.com".into()))
}

fn rec(spec: &HelloSpec) -> Vec<u8> {
    build_client_hello(spec)
}

/// A TLS 1.3-style record with these suites and extensions, built by hand.
fn hand_record(suites: &[u16], exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend([0x11; 32]);
    body.push(0);
    body.extend(((suites.len() * 2) as u16).to_be_bytes());
    suites.iter().for_each(|s| body.extend(s.to_be_bytes()));
    body.extend([1, 0]);
    let mut e = Vec::new();
    for (ty, data) in exts {
        e.extend(ty.to_be_bytes());
        e.extend((data.len() as u16).to_be_bytes());
        e.extend(data);
    }
    body.extend((e.len() as u16).to_be_bytes());
    body.extend(e);
    let mut out = vec![22, 3, 1];
    out.extend(((body.len() + 4) as u16).to_be_bytes());
    out.extend([1, 0]);
    out.extend((body.len() as u16).to_be_bytes());
    out.extend(body);
    out
}

/// key_share data with these (group, key length) entries.
fn key_share(entries: &[(u16, usize)]) -> Vec<u8> {
    let mut list = Vec::new();
    for &(g, n) in entries {
        list.extend(g.to_be_bytes());
        list.extend((n as u16).to_be_bytes());
        list.extend(vec![0x42; n]);
    }
    let mut d = (list.len() as u16).to_be_bytes().to_vec();
    d.extend(list);
    d
}

fn groups(gs: &[u16]) -> Vec<u8> {
    let mut d = ((gs.len() * 2) as u16).to_be_bytes().to_vec();
    gs.iter().for_each(|g| d.extend(g.to_be_bytes()));
    d
}

fn pq_record() -> Vec<u8> {
    hand_record(
        &[0x1301],
        &[
            (10, groups(&[0x11ec, 0x001d])),
            (51, key_share(&[(0x11ec, 1216), (0x001d, 32)])),
        ],
    )
}

fn x25519_record() -> Vec<u8> {
    hand_record(
        &[0x1301],
        &[(10, groups(&[0x001d])), (51, key_share(&[(0x001d, 32)]))],
    )
}

/// The fields tile `input` exactly: adjacent, in order, nothing lost.
fn assert_tiles(input: &[u8], fields: &[Field]) {
    let mut pos = 0;
    for f in fields {
        assert_eq!(
            f.start, pos,
            "{} starts at {}, expected {pos}",
            f.name, f.start
        );
        assert_eq!(input.get(f.range()), Some(&f.bytes[..]), "{}", f.name);
        pos = f.range().end;
    }
    assert_eq!(pos, input.len(), "fields cover the input");
    let mut names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), fields.len(), "names are unique");
}

fn note<'a>(fields: &'a [Field], name: &str) -> &'a str {
    let f = fields.iter().find(|f| f.name == name);
    f.map_or("<absent>", |f| f.note.as_str())
}

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
    let rows: [(&str, &[u8], &str); 8] = [
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

#[test]
fn diff_sentences_name_the_length_and_the_padding_not_the_random() {
    let passing = spec13();
    let mut failing = passing.clone();
    failing.pad_to = Some(1550);
    failing.random = [0x01; 32];
    let (f, p) = (rec(&failing), rec(&passing));
    let diff = hello_diff(&f, &p);
    let pad = 1550 - passing.natural_len() - 4;
    assert_eq!(
        diff.sentences,
        [
            format!("length 1550 bytes vs {}", passing.natural_len()),
            format!("padding extension: {pad} bytes vs absent"),
        ]
    );
    let random = diff
        .failing
        .iter()
        .find(|d| d.field.kind == FieldKind::Random);
    let random = random.map(|d| (d.differs, d.new_every_test));
    assert_eq!(random, Some((false, true)), "the random is never a cause");
    let differing: Vec<&str> = diff
        .failing
        .iter()
        .filter(|d| d.differs)
        .map(|d| d.field.name.as_str())
        .collect();
    assert_eq!(
        differing,
        [
            "record header",
            "handshake header",
            "extensions length",
            "extension padding (21)"
        ]
    );
    assert!(diff.passing.iter().filter(|d| d.differs).count() == 3);
    let padding = diff
        .failing
        .iter()
        .find(|d| d.field.kind == FieldKind::Extension(21));
    let range = padding.map(|d| d.field.range());
    assert!(range.is_some_and(|r| diff.failing_highlights().contains(&r)));
}

#[test]
fn diff_sentences_row_by_row() {
    let base = spec13();
    let mut scsv = HelloSpec::up_to(TLS12, Some("example.com".into()));
    scsv.cipher_suites.push(FALLBACK_SCSV);
    let mut unknown = base.clone();
    unknown.unknown_extension = Some(0x7a7a);
    let v12 = rec(&HelloSpec::up_to(TLS12, Some("example.com".into())));
    let rows: [(&str, Vec<u8>, Vec<u8>, Vec<&str>); 5] = [
        (
            "post-quantum share",
            pq_record(),
            x25519_record(),
            vec![
                "length 1319 bytes vs 97",
                "supported_groups extension: X25519MLKEM768, x25519 vs x25519",
                "key_share extension: X25519MLKEM768 (1216 bytes), x25519 (32 bytes) vs x25519 (32 bytes)",
            ],
        ),
        (
            "scsv",
            rec(&scsv),
            v12.clone(),
            vec![
                "length 149 bytes vs 147",
                "cipher suites: 18 suites: TLS_FALLBACK_SCSV, TLS_EMPTY_RENEGOTIATION_INFO_SCSV \
                 vs 17 suites: TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
            ],
        ),
        (
            "unknown extension only on the passing side",
            rec(&base),
            rec(&unknown),
            vec![
                "length 214 bytes vs 222",
                "GREASE 0x7a7a extension: absent vs 4 bytes of data",
            ],
        ),
        (
            "legacy version",
            rec(&HelloSpec::legacy(TLS10, Some("example.com".into()))),
            rec(&HelloSpec::legacy(0x0302, Some("example.com".into()))),
            vec!["legacy_version: 1.0 vs 1.1"],
        ),
        ("identical", v12.clone(), v12, vec![]),
    ];
    for (what, f, p, want) in rows {
        assert_eq!(hello_diff(&f, &p).sentences, want, "{what}");
    }
}

#[test]
fn garbage_against_a_hello_is_compared_on_whole_records() {
    let good = rec(&spec13());
    let diff = hello_diff(&[1, 2, 3], &good);
    assert_eq!(
        diff.sentences[0],
        format!("length 3 bytes vs {} (whole records)", good.len())
    );
    assert!(diff.failing.iter().all(|d| d.differs));
}

#[test]
fn closest_passing_counts_differing_fields_then_length_then_order() {
    let mut long = spec13();
    long.pad_to = Some(1550);
    let long = rec(&long);
    let mut p512 = spec13();
    p512.pad_to = Some(512);
    let mut p300 = spec13();
    p300.pad_to = Some(300);
    let (p512, p300) = (rec(&p512), rec(&p300));
    let short = rec(&spec13());
    let tls12 = rec(&HelloSpec::up_to(TLS12, Some("example.com".into())));
    let mut other_random = spec13();
    other_random.random = [7; 32];
    let other_random = rec(&other_random);
    let rows: [(&str, &[u8], Vec<&[u8]>, Option<usize>); 5] = [
        ("nothing passed", &long, vec![], None),
        (
            "fewest fields wins over length",
            &long,
            vec![&tls12, &short],
            Some(1),
        ),
        (
            "same count: closer length",
            &long,
            vec![&short, &p300, &p512],
            Some(2),
        ),
        (
            "the random is ignored",
            &short,
            vec![&tls12, &other_random],
            Some(1),
        ),
        ("full tie: first", &short, vec![&short, &short], Some(0)),
    ];
    for (what, failing, passing, want) in rows {
        assert_eq!(closest_passing(failing, &passing), want, "{what}");
    }
}

#[test]
fn hex_dump_lines_offsets_and_markers() {
    let data: Vec<u8> = (0..35).collect();
    let lines = hex_dump(&data, &[2..4, 3..18, 34..99, 5..5]);
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines.iter().map(|l| l.offset).collect::<Vec<_>>(),
        [0, 16, 32]
    );
    assert_eq!(
        lines[0].text(),
        "0000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f"
    );
    assert_eq!(
        lines[0].markers().as_deref(),
        Some("            ^^ ^^ ^^ ^^ ^^ ^^ ^^ ^^ ^^ ^^ ^^ ^^ ^^ ^^")
    );
    assert_eq!(lines[1].markers().as_deref(), Some("      ^^ ^^"));
    assert_eq!(lines[2].text(), "0020  20 21 22");
    assert_eq!(lines[2].highlighted, [false, false, true]);
    assert_eq!(lines[2].markers().as_deref(), Some("            ^^"));
    assert!(hex_dump(&[], &[0..5]).is_empty());
    assert_eq!(hex_dump(&[1], &[]).first().and_then(|l| l.markers()), None);
    // Offsets past 0xffff widen the column; the markers follow.
    let big = vec![0u8; 0x10010];
    let last = hex_dump(&big, &[0x10000..0x10001]).pop();
    let last = last.map(|l| (l.text(), l.markers()));
    assert_eq!(
        last.map(|(t, m)| (t[..12].to_string(), m)),
        Some(("10000  00 00".to_string(), Some("       ^^".to_string())))
    );
}

fn v4() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 7], 8443))
}

#[test]
fn reproduction_commands_row_by_row() {
    let sni = Some("pay.example");
    let base = "openssl s_client -connect 192.0.2.7:8443 -servername pay.example";
    let probe = |t: &str| {
        format!(
            "tls-fallback probe --only {t} --resolve pay.example:8443:192.0.2.7 pay.example:8443"
        )
    };
    let rows: Vec<(TestId, String, bool)> = vec![
        (
            TestId::Version10,
            format!("{base} -tls1 -cipher DEFAULT@SECLEVEL=0"),
            true,
        ),
        (
            TestId::Version11,
            format!("{base} -tls1_1 -cipher DEFAULT@SECLEVEL=0"),
            true,
        ),
        (TestId::Version12, format!("{base} -tls1_2"), false),
        (TestId::Version13Only, format!("{base} -tls1_3"), false),
        (TestId::Version13, base.to_string(), true),
        (
            TestId::PqKeyShare,
            format!("{base} -groups X25519MLKEM768:X25519"),
            true,
        ),
        (TestId::LongHello, probe("long_hello"), false),
        (TestId::SplitHello, probe("split_hello"), false),
        (TestId::Long300, probe("long_300"), false),
        (TestId::Future0398, probe("future_0x0398"), false),
        (TestId::ExtensionUnknown, probe("extension_unknown"), false),
        (TestId::CiphersMany, probe("ciphers_many"), false),
        (TestId::FallbackScsv, probe("fallback_scsv"), false),
    ];
    for (test, want, has_note) in rows {
        let r = reproduce(test, "pay.example", v4(), sni, None);
        assert_eq!(r.command, want, "{test}");
        assert_eq!(r.note.is_some(), has_note, "{test}");
    }
    let pq = reproduce(TestId::PqKeyShare, "pay.example", v4(), sni, None);
    assert!(pq.note.is_some_and(|n| n.contains("OpenSSL 3.5")));
}

#[test]
fn the_scsv_command_carries_the_fallback_version() {
    let sni = Some("pay.example");
    let rows = [
        (Some(TlsVersion::Tls1_2), "-tls1_2 -fallback_scsv"),
        (
            Some(TlsVersion::Tls1_0),
            "-tls1 -cipher DEFAULT@SECLEVEL=0 -fallback_scsv",
        ),
        (
            Some(TlsVersion::Tls1_1),
            "-tls1_1 -cipher DEFAULT@SECLEVEL=0 -fallback_scsv",
        ),
        (Some(TlsVersion::Tls1_3), "--only fallback_scsv"),
        (None, "--only fallback_scsv"),
    ];
    for (version, tail) in rows {
        let r = reproduce(TestId::FallbackScsv, "pay.example", v4(), sni, version);
        assert!(r.command.contains(tail), "{version:?}: {}", r.command);
    }
}

#[test]
fn addresses_sni_and_ip_hosts() {
    let v6: SocketAddr = "[2001:db8::1]:443".parse().unwrap_or(v4());
    let rows = [
        (
            TestId::Version12,
            "gw.example",
            v6,
            Some("gw.example"),
            "openssl s_client -connect '[2001:db8::1]:443' -servername gw.example -tls1_2",
        ),
        (
            TestId::LongHello,
            "gw.example",
            v6,
            Some("gw.example"),
            "tls-fallback probe --only long_hello --resolve 'gw.example:443:[2001:db8::1]' \
             gw.example:443",
        ),
        (
            TestId::LongHello,
            "[2001:db8::1]",
            v6,
            None,
            "tls-fallback probe --only long_hello '[2001:db8::1]:443'",
        ),
        (
            TestId::LongHello,
            "192.0.2.7",
            v4(),
            Some("api.example"),
            "tls-fallback probe --only long_hello --sni api.example 192.0.2.7:8443",
        ),
        (
            TestId::SplitHello,
            "GW.example",
            v4(),
            Some("other.example"),
            "tls-fallback probe --only split_hello --sni other.example --resolve \
             GW.example:8443:192.0.2.7 GW.example:8443",
        ),
        (
            TestId::Version13Only,
            "192.0.2.7",
            v4(),
            None,
            "openssl s_client -connect 192.0.2.7:8443 -tls1_3",
        ),
    ];
    for (test, host, addr, sni, want) in rows {
        assert_eq!(
            reproduce(test, host, addr, sni, None).command,
            want,
            "{host}"
        );
    }
}

/// Runs `command` with its program replaced by a printer in a real POSIX shell, and returns
/// the arguments the shell passed.
fn shell_args(command: &str) -> Vec<String> {
    let (_program, rest) = command.split_once(' ').unwrap_or((command, ""));
    let script = format!("printf '%s\\0' {rest}");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("sh runs");
    assert!(out.status.success(), "{script}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    text.split_terminator('\0').map(str::to_string).collect()
}

#[test]
fn hostile_names_stay_one_argument_in_a_real_shell() {
    let hostile = [
        "evil.example; touch /tmp/tls-fallback-pwned",
        "$(touch /tmp/tls-fallback-pwned)",
        "`touch /tmp/tls-fallback-pwned`",
        "it's'; echo 'x",
        "a\nb",
        "-rf",
        "*",
        "",
    ];
    for name in hostile {
        let r = reproduce(TestId::LongHello, name, v4(), Some(name), None);
        let args = shell_args(&r.command);
        if name.is_empty() {
            assert_eq!(args.last().map(String::as_str), Some("192.0.2.7:8443"));
            continue;
        }
        let target = format!("{name}:8443");
        assert_eq!(args.last(), Some(&target), "{name:?}: {}", r.command);
        let resolve = format!("{name}:8443:192.0.2.7");
        assert!(
            args.iter()
                .any(|a| a == &resolve || *a == format!("--resolve={resolve}")),
            "{name:?}: {args:?}"
        );
        let r = reproduce(TestId::Version12, name, v4(), Some(name), None);
        let args = shell_args(&r.command);
        assert_eq!(
            args[..5],
            [
                "s_client",
                "-connect",
                "192.0.2.7:8443",
                "-servername",
                name
            ]
        );
    }
    assert!(!std::path::Path::new("/tmp/tls-fallback-pwned").exists());
}

#[test]
fn a_target_starting_with_a_dash_is_not_read_as_a_flag() {
    let r = reproduce(
        TestId::LongHello,
        "-x.example",
        v4(),
        Some("-x.example"),
        None,
    );
    assert_eq!(
        r.command,
        "tls-fallback probe --only long_hello --resolve=-x.example:8443:192.0.2.7 -- \
         -x.example:8443"
    );
}

#[test]
fn known_bugs_row_by_row() {
    use FailedHow::*;
    let rows: [(TestId, FailedHow, Option<&str>, &[&str]); 22] = [
        (
            TestId::Long300,
            Timeout,
            Some("256..511"),
            &["rfc7685#section-4", "rfc8446#section-9.3"],
        ),
        (
            TestId::Long512,
            Reset,
            Some("512 bytes"),
            &["rfc8446#section-9.3"],
        ),
        (
            TestId::LongHello,
            Timeout,
            Some("Large ClientHello"),
            &["tldr.fail", "ecdhe-mlkem"],
        ),
        (
            TestId::SplitHello,
            Closed,
            Some("two TCP segments"),
            &["tldr.fail"],
        ),
        (
            TestId::PqKeyShare,
            Alert(47),
            Some("X25519MLKEM768"),
            &["tldr.fail", "ecdhe-mlkem"],
        ),
        (
            TestId::Version13,
            Alert(70),
            Some("TLS 1.3 version"),
            &["rfc8446#appendix-D"],
        ),
        (
            TestId::Version13Only,
            Reset,
            Some("TLS 1.3 version"),
            &["rfc8446#appendix-D"],
        ),
        (TestId::Version13Only, Alert(70), None, &[]),
        (TestId::Version13Only, Alert(40), None, &[]),
        (
            TestId::Version12,
            Timeout,
            Some("TLS 1.2 hello dropped"),
            &["rfc8446#appendix-D"],
        ),
        (TestId::Version12, Alert(70), None, &[]),
        (TestId::Version10, Reset, None, &[]),
        (TestId::Version11, Alert(70), None, &[]),
        (
            TestId::Future0398,
            Alert(70),
            Some("Future-version"),
            &["rfc8446#appendix-D"],
        ),
        (
            TestId::ExtensionUnknown,
            Alert(50),
            Some("Unknown-extension"),
            &["rfc8701"],
        ),
        (
            TestId::CiphersMany,
            Closed,
            Some("Cipher-suite list"),
            &["rfc8701"],
        ),
        (
            TestId::FallbackScsv,
            ServerHello,
            Some("not supported"),
            &["rfc7507"],
        ),
        (
            TestId::FallbackScsv,
            Alert(86),
            Some("blocked in the path"),
            &["rfc7507"],
        ),
        (
            TestId::FallbackScsv,
            Timeout,
            Some("SCSV intolerance"),
            &["rfc7507"],
        ),
        (TestId::FallbackScsv, Alert(40), None, &[]),
        (TestId::LongShort, Timeout, None, &[]),
        (TestId::Long300, ServerHello, None, &[]),
    ];
    for (test, how, name, urls) in rows {
        let bug = known_bug(test, how);
        assert_eq!(bug.is_some(), name.is_some(), "{test} {how:?}");
        let Some(bug) = bug else { continue };
        assert!(
            bug.name.contains(name.unwrap_or_default()),
            "{test}: {}",
            bug.name
        );
        for url in urls {
            assert!(
                bug.references.iter().any(|r| r.url.contains(url)),
                "{test}: {url}"
            );
        }
        assert!(bug.references.iter().all(|r| r.url.starts_with("https://")));
        assert!(bug.explanation.contains(" Here the box "), "{test}");
    }
    let pq = known_bug(TestId::PqKeyShare, Alert(47)).map(|b| b.explanation);
    assert!(pq.is_some_and(|e| e.contains("sent alert illegal_parameter (47)")));
}

#[test]
fn failed_how_from_outcomes() {
    let rows = [
        (TestOutcome::Closed, Some(FailedHow::Closed)),
        (TestOutcome::Reset, Some(FailedHow::Reset)),
        (TestOutcome::Timeout, Some(FailedHow::Timeout)),
        (TestOutcome::Alert(86), Some(FailedHow::Alert(86))),
        (
            TestOutcome::ServerHello(WireVersion(TLS12)),
            Some(FailedHow::ServerHello),
        ),
        (TestOutcome::ConnectError, None),
        (TestOutcome::Skipped, None),
        (TestOutcome::Garbage, None),
    ];
    for (outcome, want) in rows {
        assert_eq!(FailedHow::of(&outcome), want, "{outcome}");
    }
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

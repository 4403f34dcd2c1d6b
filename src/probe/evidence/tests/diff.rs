//! The diff sentences, the closest passing hello and the hex dump.

use super::*;
use crate::probe::hello::{FALLBACK_SCSV, TLS10, TLS12};

/// What, failing hello, passing hello, the sentences expected.
type DiffRow = (&'static str, Vec<u8>, Vec<u8>, Vec<&'static str>);
/// What, failing hello, passing hellos, the pick expected.
type PickRow<'a> = (&'static str, &'a [u8], Vec<&'a [u8]>, Option<usize>);

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
    let rows: [DiffRow; 5] = [
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
    let rows: [PickRow; 5] = [
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
    assert!(hex_dump(&[], std::slice::from_ref(&(0..5))).is_empty());
    assert_eq!(hex_dump(&[1], &[]).first().and_then(|l| l.markers()), None);
    // Offsets past 0xffff widen the column; the markers follow.
    let big = vec![0u8; 0x10010];
    let last = hex_dump(&big, std::slice::from_ref(&(0x10000..0x10001))).pop();
    let last = last.map(|l| (l.text(), l.markers()));
    assert_eq!(
        last.map(|(t, m)| (t[..12].to_string(), m)),
        Some(("10000  00 00".to_string(), Some("       ^^".to_string())))
    );
}

use super::*;

/// Walks a built record and checks every length field; returns (extension types, hs len).
fn check_structure(record: &[u8]) -> (Vec<u16>, usize) {
    assert_eq!(record[0], 22, "handshake record");
    let rec_len = u16::from_be_bytes([record[3], record[4]]) as usize;
    assert_eq!(rec_len, record.len() - 5, "record length");
    let hs = &record[5..];
    assert_eq!(hs[0], 1, "client_hello");
    let hs_len = u32::from_be_bytes([0, hs[1], hs[2], hs[3]]) as usize;
    assert_eq!(hs_len + 4, hs.len(), "handshake length");
    let b = &hs[4..];
    let mut p = 2 + 32;
    let sid = b[p] as usize;
    p += 1 + sid;
    let cs = u16::from_be_bytes([b[p], b[p + 1]]) as usize;
    assert_eq!(cs % 2, 0);
    p += 2 + cs;
    let comp = b[p] as usize;
    p += 1 + comp;
    let ext_len = u16::from_be_bytes([b[p], b[p + 1]]) as usize;
    p += 2;
    assert_eq!(p + ext_len, b.len(), "extensions length");
    let mut types = Vec::new();
    while p < b.len() {
        let t = u16::from_be_bytes([b[p], b[p + 1]]);
        let l = u16::from_be_bytes([b[p + 2], b[p + 3]]) as usize;
        p += 4 + l;
        assert!(p <= b.len(), "extension {t:#x} overruns");
        assert!(!types.contains(&t), "duplicate extension {t:#x}");
        types.push(t);
    }
    assert_eq!(p, b.len());
    (types, hs.len())
}

#[test]
fn every_standard_hello_has_consistent_lengths() {
    let sni = Some("localhost".to_string());
    let specs = [
        HelloSpec::legacy(TLS10, sni.clone()),
        HelloSpec::legacy(TLS11, sni.clone()),
        HelloSpec::legacy(TLS12, sni.clone()),
        HelloSpec::legacy(0x0304, sni.clone()),
        HelloSpec::legacy(0x0398, None),
        HelloSpec::with_supported_versions(vec![TLS13], sni.clone()),
        HelloSpec::up_to(TLS13, sni.clone()),
    ];
    for spec in specs {
        let (_, len) = check_structure(&build_client_hello(&spec));
        assert_eq!(len, spec.hello_len());
        assert!(len < 256, "{spec:?} is {len} bytes");
    }
}

#[test]
fn tls13_extensions_only_when_tls13_is_offered() {
    let (t12, _) = check_structure(&build_client_hello(&HelloSpec::legacy(TLS12, None)));
    assert!(!t12.contains(&EXT_SUPPORTED_VERSIONS) && !t12.contains(&EXT_KEY_SHARE));
    let spec = HelloSpec::legacy(TLS12, None);
    assert!(!spec.cipher_suites.iter().any(|s| TLS13_SUITES.contains(s)));
    let (t13, _) = check_structure(&build_client_hello(&HelloSpec::up_to(TLS13, None)));
    assert!(t13.contains(&EXT_SUPPORTED_VERSIONS) && t13.contains(&EXT_KEY_SHARE));
    let t10 = HelloSpec::legacy(TLS10, None);
    assert!(!t10.signature_algorithms);
    assert!(!t10.cipher_suites.iter().any(|s| TLS12_SUITES.contains(s)));
}

#[test]
fn padding_reaches_the_exact_target_length() {
    for target in [300, 512, 600, 1000] {
        let mut spec = HelloSpec::up_to(TLS13, Some("example.com".into()));
        spec.pad_to = Some(target);
        let record = build_client_hello(&spec);
        let (types, len) = check_structure(&record);
        assert_eq!(len, target);
        assert_eq!(types.last(), Some(&EXT_PADDING));
    }
    let mut spec = HelloSpec::up_to(TLS12, None);
    spec.pad_to = Some(10); // below the natural length: no padding at all
    let (types, len) = check_structure(&build_client_hello(&spec));
    assert!(!types.contains(&EXT_PADDING));
    assert_eq!(len, spec.natural_len());
}

#[test]
fn unknown_extension_and_many_suites_are_well_formed() {
    let mut spec = HelloSpec::up_to(TLS13, Some("a.example".into()));
    spec.unknown_extension = Some(0x7a7a);
    spec.cipher_suites.extend(0x7a00..0x7a90);
    let (types, _) = check_structure(&build_client_hello(&spec));
    assert!(types.contains(&0x7a7a));
}

/// FNV-1a of a built record, to pin hellos byte for byte.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn existing_hellos_are_byte_identical_to_before_the_post_quantum_option() {
    // (length, FNV-1a) of each record as built before `pq_key_share` existed.
    let sni = Some("localhost".to_string());
    let pinned = [
        (
            HelloSpec::legacy(TLS10, sni.clone()),
            106,
            0xa09f_ffa3_c0fa_3fe3,
        ),
        (
            HelloSpec::legacy(TLS12, sni.clone()),
            150,
            0x8e75_5dc3_ec22_232c,
        ),
        (HelloSpec::legacy(0x0398, None), 132, 0xd9c0_bbb6_241b_6aa7),
        (
            HelloSpec::with_supported_versions(vec![TLS13], sni.clone()),
            173,
            0xe7da_b441_469e_3523,
        ),
        (
            HelloSpec::up_to(TLS13, sni.clone()),
            217,
            0xa6d7_3082_b51d_4926,
        ),
        (HelloSpec::up_to(TLS13, None), 199, 0xb604_d1bc_6f45_12be),
    ];
    for (spec, len, hash) in pinned {
        assert!(!spec.pq_key_share);
        let record = build_client_hello(&spec);
        assert_eq!((record.len(), fnv(&record)), (len, hash), "{spec:?}");
    }
}

/// FIPS 203 section 7.2's modulus check on an encapsulation key: ByteEncode_12 of
/// ByteDecode_12 of its first 384 * k bytes gives them back (every 12-bit coefficient is
/// below q), and the length is 384 * k + 32.
fn passes_modulus_check(ek: &[u8], k: usize) -> bool {
    if ek.len() != 384 * k + 32 {
        return false;
    }
    let mut coefficients = Vec::with_capacity(256 * k);
    for c in ek[..384 * k].chunks_exact(3) {
        let (b0, b1, b2) = (u32::from(c[0]), u32::from(c[1]), u32::from(c[2]));
        coefficients.push(b0 | (b1 & 0x0f) << 8);
        coefficients.push(b1 >> 4 | b2 << 4);
    }
    // ByteDecode_12 reduces mod q; ByteEncode_12 writes the reduced values back.
    let mut again = Vec::with_capacity(384 * k);
    for pair in coefficients.chunks_exact(2) {
        let (a, b) = (pair[0] % MLKEM_Q, pair[1] % MLKEM_Q);
        again.extend_from_slice(&[a as u8, (a >> 8 | (b & 0x0f) << 4) as u8, (b >> 4) as u8]);
    }
    coefficients.iter().all(|&c| c < MLKEM_Q) && again == ek[..384 * k]
}

#[test]
fn the_mlkem768_key_passes_the_fips203_modulus_check() {
    assert!(passes_modulus_check(&MLKEM768_ENCAPSULATION_KEY, 3));
    assert_eq!(MLKEM768_ENCAPSULATION_KEY[1152..], [0x5a; 32], "rho");
    // The first coefficients are the pattern, unpacked little-endian.
    let k = &MLKEM768_ENCAPSULATION_KEY;
    let a = u32::from(k[0]) | (u32::from(k[1]) & 0x0f) << 8;
    let b = u32::from(k[1]) >> 4 | u32::from(k[2]) << 4;
    assert_eq!((a, b), (17, 1038));
    // The check catches a coefficient of q or above, in either half of a triple.
    for (at, patch) in [(0, [0x01, 0x0d]), (1, [0x10, 0xd0]), (1150, [0xff, 0xff])] {
        let mut bad = MLKEM768_ENCAPSULATION_KEY;
        bad[at..at + 2].copy_from_slice(&patch);
        assert!(!passes_modulus_check(&bad, 3), "patch at {at}");
    }
    assert!(!passes_modulus_check(&MLKEM768_ENCAPSULATION_KEY[1..], 3));
}

#[test]
fn a_post_quantum_hello_offers_x25519mlkem768_first_with_a_1216_byte_share() {
    let spec = HelloSpec::post_quantum(None);
    let record = build_client_hello(&spec);
    let (types, len) = check_structure(&record);
    assert_eq!(len, PQ_HELLO_LEN);
    assert_eq!(
        len,
        HelloSpec::up_to(TLS13, None).hello_len() + PQ_KEY_SHARE_EXTRA_LEN
    );
    assert!(types.contains(&EXT_KEY_SHARE) && types.contains(&EXT_SUPPORTED_GROUPS));
    let hello = crate::wire::parse_client_hello(&record).unwrap();
    assert_eq!(hello.supported_groups, PQ_GROUPS);
    let shares: Vec<_> = hello
        .key_shares
        .iter()
        .map(|k| (k.group, k.key_len))
        .collect();
    assert_eq!(shares, [(0x11ec, 1216), (0x001d, 32)]);
    // The hybrid share: the ML-KEM-768 encapsulation key, then the x25519 key.
    let group = GROUP_X25519MLKEM768.to_be_bytes();
    let at = record
        .windows(4)
        .position(|w| w == [group[0], group[1], 0x04, 0xc0])
        .unwrap()
        + 4;
    assert_eq!(record[at..at + 1184], MLKEM768_ENCAPSULATION_KEY);
    assert_eq!(record[at + 1184..at + 1216], X25519_PUBLIC_PQ);
    assert_eq!(record[at + 1216..at + 1220], [0x00, 0x1d, 0x00, 0x20]);
    assert_eq!(record[at + 1220..at + 1252], X25519_PUBLIC);
    // A server name of n bytes adds n + 9.
    let named = HelloSpec::post_quantum(Some("pay.example.com".into()));
    assert_eq!(named.hello_len(), PQ_HELLO_LEN + 15 + 9);
}

#[test]
fn the_post_quantum_option_needs_ecc_for_the_group_and_key_share_for_the_share() {
    let mut spec = HelloSpec::legacy(TLS12, None);
    spec.pq_key_share = true;
    let hello = crate::wire::parse_client_hello(&build_client_hello(&spec)).unwrap();
    assert_eq!(hello.supported_groups, PQ_GROUPS);
    assert!(hello.key_shares.is_empty());
    let mut spec = HelloSpec::post_quantum(None);
    spec.ecc = false;
    let hello = crate::wire::parse_client_hello(&build_client_hello(&spec)).unwrap();
    assert!(hello.supported_groups.is_empty());
    assert!(hello.has_key_share(GROUP_X25519MLKEM768));
}

#[test]
fn the_tls13_baseline_padded_to_a_post_quantum_size_builds_in_one_record() {
    for target in [PQ_HELLO_LEN, 1550] {
        let mut spec = HelloSpec::up_to(TLS13, Some("localhost".into()));
        spec.pad_to = Some(target);
        let record = build_client_hello(&spec);
        let (types, len) = check_structure(&record);
        assert_eq!(len, target);
        assert_eq!(types.last(), Some(&EXT_PADDING));
        let hello = crate::wire::parse_client_hello(&record).unwrap();
        assert_eq!(hello.hello_len, target);
        assert_eq!(hello.key_shares.len(), 1, "x25519 only");
        assert_eq!(hello.supported_groups, GROUPS);
    }
}

#[test]
fn oversized_inputs_are_capped_not_panicking() {
    let mut spec = HelloSpec::up_to(TLS13, Some("x".repeat(1000)));
    spec.cipher_suites = (0..40_000u32).map(|i| i as u16).collect();
    spec.supported_versions = Some(vec![TLS13; 500]);
    spec.pad_to = Some(usize::MAX);
    let record = build_client_hello(&spec);
    let (_, len) = check_structure(&record);
    assert!(len <= 16_384);
}

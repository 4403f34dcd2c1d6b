//! The evidence functions, row by row: fields of every hello the probe sends, garbage and
//! truncation (`fields`), the diff sentences, the closest passing hello and the dump (`diff`),
//! the commands, run through a real `sh` to prove a hostile name stays one argument, and the
//! known bugs (`commands`). The helpers below build hellos by hand.

mod commands;
mod diff;
mod fields;

use super::*;
use crate::probe::hello::{build_client_hello, HelloSpec, TLS13};

pub(super) fn spec13() -> HelloSpec {
    HelloSpec::up_to(TLS13, Some("example.com".into()))
}

pub(super) fn rec(spec: &HelloSpec) -> Vec<u8> {
    build_client_hello(spec)
}

/// A TLS 1.3-style record with these suites and extensions, built by hand.
pub(super) fn hand_record(suites: &[u16], exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
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
pub(super) fn key_share(entries: &[(u16, usize)]) -> Vec<u8> {
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

pub(super) fn groups(gs: &[u16]) -> Vec<u8> {
    let mut d = ((gs.len() * 2) as u16).to_be_bytes().to_vec();
    gs.iter().for_each(|g| d.extend(g.to_be_bytes()));
    d
}

pub(super) fn pq_record() -> Vec<u8> {
    hand_record(
        &[0x1301],
        &[
            (10, groups(&[0x11ec, 0x001d])),
            (51, key_share(&[(0x11ec, 1216), (0x001d, 32)])),
        ],
    )
}

pub(super) fn x25519_record() -> Vec<u8> {
    hand_record(
        &[0x1301],
        &[(10, groups(&[0x001d])), (51, key_share(&[(0x001d, 32)]))],
    )
}

/// The fields tile `input` exactly: adjacent, in order, nothing lost.
pub(super) fn assert_tiles(input: &[u8], fields: &[Field]) {
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

pub(super) fn note<'a>(fields: &'a [Field], name: &str) -> &'a str {
    let f = fields.iter().find(|f| f.name == name);
    f.map_or("<absent>", |f| f.note.as_str())
}

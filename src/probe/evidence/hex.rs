//! A renderer-neutral hex dump: 16 bytes a line, each byte flagged if it lies in a highlighted
//! range. HTML wraps flagged bytes in `<mark>`; Markdown prints [`HexLine::text`] with
//! [`HexLine::markers`] underneath in a code block.

use std::fmt;
use std::ops::Range;

use serde::Serialize;

/// Bytes shown per line.
pub const BYTES_PER_LINE: usize = 16;

/// Spaces between the offset and the bytes in [`HexLine::text`].
const OFFSET_GAP: usize = 2;

/// One line of a hex dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HexLine {
    /// Offset of the line's first byte in the record.
    pub offset: usize,
    /// Up to 16 bytes.
    pub bytes: Vec<u8>,
    /// One flag per byte: inside a highlighted range.
    pub highlighted: Vec<bool>,
}

impl HexLine {
    /// `"0010  16 03 01 ..."`: the offset in hex (at least 4 digits), two spaces, the bytes.
    pub fn text(&self) -> String {
        format!("{:04x}  {}", self.offset, Hex(&self.bytes).spaced())
    }

    /// A line to print under [`text`](Self::text): `^^` under each highlighted byte, spaces
    /// elsewhere, trailing spaces trimmed; `None` if nothing on the line is highlighted.
    pub fn markers(&self) -> Option<String> {
        if !self.highlighted.contains(&true) {
            return None;
        }
        let pad = format!("{:04x}", self.offset).len() + OFFSET_GAP;
        let mut line = " ".repeat(pad);
        for (i, &h) in self.highlighted.iter().enumerate() {
            if i > 0 {
                line.push(' ');
            }
            line.push_str(if h { "^^" } else { "  " });
        }
        Some(line.trim_end().to_string())
    }
}

/// Splits `record` into lines of 16 bytes, flagging the bytes inside any of `highlight`
/// (ranges may overlap, be empty or run past the end).
///
/// ```
/// use tls_fallback::probe::evidence::hex_dump;
///
/// let lines = hex_dump(&[0x16, 0x03, 0x01, 0x00, 0x2a], &[1..3]);
/// assert_eq!(lines[0].text(), "0000  16 03 01 00 2a");
/// assert_eq!(lines[0].markers().as_deref(), Some("         ^^ ^^"));
/// ```
pub fn hex_dump(record: &[u8], highlight: &[Range<usize>]) -> Vec<HexLine> {
    record
        .chunks(BYTES_PER_LINE)
        .enumerate()
        .map(|(n, chunk)| {
            let offset = n * BYTES_PER_LINE;
            let highlighted = (offset..offset + chunk.len())
                .map(|i| highlight.iter().any(|r| r.contains(&i)))
                .collect();
            HexLine {
                offset,
                bytes: chunk.to_vec(),
                highlighted,
            }
        })
        .collect()
}

/// Bytes displayed as lowercase hex.
pub(super) struct Hex<'a>(pub(super) &'a [u8]);

impl Hex<'_> {
    /// "16 03 01".
    fn spaced(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|b| format!("{b:02x}")).collect();
        parts.join(" ")
    }
}

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

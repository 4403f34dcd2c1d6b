//! The one byte reader of the crate: a cursor over `&[u8]` whose every read is bounds-checked
//! and returns `None` past the end. Parsers of what a peer sends build on it, so no input,
//! truncated, hostile or random, can make them panic or allocate without bound.

/// A bounded cursor over a byte slice, reading big-endian integers and length-prefixed vectors.
///
/// ```
/// use tls_fallback::wire::Reader;
///
/// let mut r = Reader::new(&[0x03, 0x03, 2, 0xaa, 0xbb, 7]);
/// assert_eq!(r.u16(), Some(0x0303));
/// assert_eq!(r.vec8(), Some(&[0xaa, 0xbb][..]));
/// assert_eq!(r.u16(), None); // one byte left: nothing is consumed past the end
/// assert_eq!(r.u8(), Some(7));
/// assert!(r.is_empty());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.data.len()
    }

    /// The bytes not read yet (the reader does not move).
    pub fn rest(&self) -> &'a [u8] {
        self.data
    }

    /// The next `n` bytes; `None` (and nothing consumed) if fewer are left.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.data.len() {
            return None;
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Some(head)
    }

    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        let (&b, tail) = self.data.split_first()?;
        self.data = tail;
        Some(b)
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self) -> Option<u16> {
        match *self.take(2)? {
            [a, b] => Some(u16::from_be_bytes([a, b])),
            _ => None,
        }
    }

    /// A big-endian 24-bit length (handshake message lengths).
    pub fn u24(&mut self) -> Option<usize> {
        match *self.take(3)? {
            [a, b, c] => Some(usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c)),
            _ => None,
        }
    }

    /// A vector with a one-byte length prefix.
    pub fn vec8(&mut self) -> Option<&'a [u8]> {
        let mut probe = *self;
        let n = usize::from(probe.u8()?);
        let v = probe.take(n)?;
        *self = probe;
        Some(v)
    }

    /// A vector with a two-byte length prefix.
    pub fn vec16(&mut self) -> Option<&'a [u8]> {
        let mut probe = *self;
        let n = usize::from(probe.u16()?);
        let v = probe.take(n)?;
        *self = probe;
        Some(v)
    }

    /// A list of big-endian `u16`s filling `bytes`; `None` if its length is odd.
    pub fn u16_list(bytes: &[u8]) -> Option<Vec<u16>> {
        if bytes.len() % 2 != 0 {
            return None;
        }
        Some(
            bytes
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_none_and_consume_nothing() {
        let bytes = [0, 3, 1, 2];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.vec16(), None, "announces 3 bytes, 2 left");
        assert_eq!(r.remaining(), 4);
        assert_eq!(r.u24(), Some(0x0301));
        assert_eq!(r.u16(), None);
        assert_eq!(r.take(2), None);
        assert_eq!(r.rest(), &[2]);
        assert_eq!(r.vec8(), None);
        assert_eq!(r.u8(), Some(2));
        assert_eq!(r.u8(), None);
    }

    #[test]
    fn u16_lists_need_an_even_length() {
        assert_eq!(Reader::u16_list(&[3, 4, 3, 3]), Some(vec![0x0304, 0x0303]));
        assert_eq!(Reader::u16_list(&[3, 4, 3]), None);
        assert_eq!(Reader::u16_list(&[]), Some(vec![]));
    }
}

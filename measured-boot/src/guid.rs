//! EFI GUIDs in their on-disk (mixed-endian) byte order.

use std::fmt;

/// A GUID as stored in firmware tables: the first three fields little-endian,
/// the last eight bytes as written.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

const fn hex_nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("invalid hex digit in GUID literal"),
    }
}

impl Guid {
    /// Parses the canonical text form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` at compile time.
    pub const fn parse(text: &str) -> Self {
        let s = text.as_bytes();
        assert!(s.len() == 36, "GUID literal must be 36 characters");
        let mut raw = [0u8; 16];
        let mut i = 0;
        let mut n = 0;
        while i < 36 {
            if s[i] == b'-' {
                i += 1;
                continue;
            }
            raw[n] = (hex_nibble(s[i]) << 4) | hex_nibble(s[i + 1]);
            n += 1;
            i += 2;
        }
        assert!(n == 16, "GUID literal must have 32 hex digits");
        // Mixed endian: u32, u16, u16 are stored little-endian.
        let out = [
            raw[3], raw[2], raw[1], raw[0], raw[5], raw[4], raw[7], raw[6], raw[8], raw[9],
            raw[10], raw[11], raw[12], raw[13], raw[14], raw[15],
        ];
        Guid(out)
    }

    /// Reads a GUID from 16 on-disk bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
        Some(Guid(arr))
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9]
        )?;
        for x in &b[10..] {
            write!(f, "{x:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::Guid;

    #[test]
    fn round_trips_text_form() {
        let text = "96b582de-1fb2-45f7-baea-a366c55a082d";
        let g = Guid::parse(text);
        assert_eq!(g.0[0], 0xde);
        assert_eq!(g.0[3], 0x96);
        assert_eq!(g.0[4], 0xb2);
        assert_eq!(g.0[8], 0xba);
        assert_eq!(g.to_string(), text);
    }
}

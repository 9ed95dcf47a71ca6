//! GPT-2's byte-to-character table: each byte maps to one printable
//! character, so byte-level BPE vocabularies can be stored as text.

use std::sync::OnceLock;

struct Tables {
    to_char: [char; 256],
    to_byte: std::collections::HashMap<char, u8>,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut to_char = ['\0'; 256];
        let mut next = 256u32;
        for b in 0..=255u8 {
            let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
            to_char[b as usize] = if printable {
                char::from(b)
            } else {
                let c = char::from_u32(next).unwrap_or('\u{FFFD}');
                next += 1;
                c
            };
        }
        let to_byte = to_char.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
        Tables { to_char, to_byte }
    })
}

/// The character that stands for byte `b`.
pub fn byte_char(b: u8) -> char {
    tables().to_char[b as usize]
}

/// The bytes a byte-level token text stands for; `None` if a character is not
/// in the table (the token is not byte-level text).
pub fn text_bytes(text: &str) -> Option<Vec<u8>> {
    let t = tables();
    text.chars().map(|c| t.to_byte.get(&c).copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips_through_its_character() {
        for b in 0..=255u8 {
            assert_eq!(text_bytes(&byte_char(b).to_string()), Some(vec![b]));
        }
    }

    #[test]
    fn space_and_newline_use_gpt2_characters() {
        assert_eq!(byte_char(b' '), 'Ġ');
        assert_eq!(byte_char(b'\n'), 'Ċ');
        assert_eq!(byte_char(b'a'), 'a');
    }
}

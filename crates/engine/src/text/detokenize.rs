//! Incremental detokenization: token bytes in, valid UTF-8 text out, never splitting a character.
//!
//! A byte-level BPE token can end in the middle of a multi-byte character (emoji, CJK); those bytes wait
//! until the character is complete. Bytes that can never form valid UTF-8 become U+FFFD, as a non-streamed
//! decode would render them. A character still unfinished when generation ends (cut by `max_tokens`, a
//! stop token or a cancellation) is held back, never sent as a replacement character: the answer ends
//! with the last whole character.

/// Buffers the incomplete tail of a UTF-8 sequence between tokens.
#[derive(Debug, Default)]
pub struct IncrementalDecoder {
    pending: Vec<u8>,
}

impl IncrementalDecoder {
    /// Adds one token's bytes and returns the text that is now complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        // Invalid bytes: replace them and keep going.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                        // An incomplete character at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                    }
                }
            }
        }
    }

    /// Ends the sequence: what is left is at most the start of one unfinished character (everything
    /// else was released by [`IncrementalDecoder::push`]), and it is dropped rather than shown as U+FFFD.
    /// Returns the text still to release, which is therefore always empty; kept as a call so the end of
    /// a sequence stays explicit.
    pub fn finish(&mut self) -> String {
        self.pending.clear();
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_emoji_is_emitted_once_complete() {
        let bytes = "a🙂b".as_bytes();
        let mut d = IncrementalDecoder::default();
        let pieces: Vec<String> = bytes.iter().map(|b| d.push(&[*b])).collect();
        assert_eq!(pieces.concat() + &d.finish(), "a🙂b");
        assert!(pieces.iter().all(|p| p.chars().all(|c| c != char::REPLACEMENT_CHARACTER)));
        assert_eq!(pieces[4], "🙂");
    }

    #[test]
    fn invalid_bytes_match_lossy_decoding() {
        let bytes = [b'x', 0xff, b'y', 0xe6, 0x97, b'z'];
        let mut d = IncrementalDecoder::default();
        let streamed: String = bytes.iter().map(|b| d.push(&[*b])).collect::<String>() + &d.finish();
        assert_eq!(streamed, String::from_utf8_lossy(&bytes));
    }

    /// A generation cut in the middle of a character (the first two bytes of `文`) ends with the last
    /// whole character, not with U+FFFD.
    #[test]
    fn an_unfinished_character_at_the_end_is_held_back() {
        let bytes = [b'4', b'1', b'6', b'2', 0xe6, 0x96];
        let mut d = IncrementalDecoder::default();
        let streamed: String = bytes.iter().map(|b| d.push(&[*b])).collect::<String>() + &d.finish();
        assert_eq!(streamed, "4162");
    }
}

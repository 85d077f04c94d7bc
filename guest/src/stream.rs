//! Turns generated token bytes into text that is safe to send: whole UTF-8 characters only,
//! and never any part of a stop string.

/// What pushing a token's bytes released.
#[derive(Debug, PartialEq, Eq)]
pub enum Released {
    /// Text to send now (possibly empty while something is held back).
    Text(String),
    /// A stop string appeared: `text` is what preceded it; generation ends.
    Stop { text: String, stop: String },
}

/// Buffers output so that partial characters and possible stop-string prefixes are held back.
pub struct TextStream {
    stops: Vec<String>,
    /// Decoded text not yet released.
    held: String,
    /// Trailing bytes of an incomplete UTF-8 character.
    partial: Vec<u8>,
}

impl TextStream {
    /// A stream that ends at any of `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        TextStream {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
            partial: Vec::new(),
        }
    }

    /// Adds one token's bytes and returns what may be sent.
    pub fn push(&mut self, bytes: &[u8]) -> Released {
        self.partial.extend_from_slice(bytes);
        self.decode_complete();
        if let Some((at, stop)) = self.first_stop() {
            let text = self.held[..at].to_string();
            self.held.clear();
            self.partial.clear();
            return Released::Stop { text, stop };
        }
        let keep = self.longest_stop_prefix_suffix();
        let release_to = self.held.len() - keep;
        let text = self.held[..release_to].to_string();
        self.held.drain(..release_to);
        Released::Text(text)
    }

    /// Releases everything held, with an incomplete character shown as U+FFFD.
    pub fn finish(&mut self) -> String {
        let mut text = std::mem::take(&mut self.held);
        text.push_str(&String::from_utf8_lossy(&self.partial));
        self.partial.clear();
        text
    }

    /// Moves every decidable byte of `partial` into `held`: valid characters as they are,
    /// invalid sequences as U+FFFD (as `String::from_utf8_lossy` would), keeping only an
    /// incomplete character at the end.
    fn decode_complete(&mut self) {
        let mut rest: &[u8] = &self.partial;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    self.held.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    self.held.push_str(std::str::from_utf8(valid).expect("checked by valid_up_to"));
                    match e.error_len() {
                        Some(n) => {
                            self.held.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[n..];
                        }
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        let consumed = self.partial.len() - rest.len();
        self.partial.drain(..consumed);
    }

    /// The earliest stop string in `held` (the longest among those starting there).
    fn first_stop(&self) -> Option<(usize, String)> {
        self.stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|&(at, s)| (at, std::cmp::Reverse(s.len())))
            .map(|(at, s)| (at, s.clone()))
    }

    /// Length of the longest suffix of `held` that begins some stop string.
    fn longest_stop_prefix_suffix(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            for (len, _) in stop.char_indices().skip(1) {
                if len > best && self.held.ends_with(&stop[..len]) {
                    best = len;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(stream: &mut TextStream, pieces: &[&[u8]]) -> Vec<Released> {
        pieces.iter().map(|p| stream.push(p)).collect()
    }

    #[test]
    fn holds_a_split_character_until_it_is_whole() {
        let mut s = TextStream::new(&[]);
        let euro = "€".as_bytes();
        let out = texts(&mut s, &[b"a", &euro[..1], &euro[1..2], &euro[2..], b"b"]);
        let expected = ["a", "", "", "€", "b"].map(|t| Released::Text(t.to_string()));
        assert_eq!(out, expected);
    }

    #[test]
    fn invalid_bytes_become_replacement_characters_like_lossy_decoding() {
        let bytes: &[u8] = &[b'x', 0xff, 0xe2, 0x82, b'y', 0xe2];
        let mut s = TextStream::new(&[]);
        let mut text = String::new();
        for b in bytes {
            if let Released::Text(t) = s.push(&[*b]) {
                text.push_str(&t);
            }
        }
        text.push_str(&s.finish());
        assert_eq!(text, String::from_utf8_lossy(bytes));
    }

    #[test]
    fn stop_string_across_tokens_is_never_released() {
        let mut s = TextStream::new(&["\n\nThe".to_string()]);
        let out = texts(&mut s, &[b"Amen.", b"\n", b"\nTh", b"e end"]);
        assert_eq!(out[0], Released::Text("Amen.".into()));
        assert_eq!(out[1], Released::Text("".into()));
        assert_eq!(out[2], Released::Text("".into()));
        assert_eq!(out[3], Released::Stop { text: "".into(), stop: "\n\nThe".into() });
    }

    #[test]
    fn a_prefix_that_does_not_complete_is_released() {
        let mut s = TextStream::new(&["stop".to_string()]);
        assert_eq!(s.push(b"a st"), Released::Text("a ".into()));
        assert_eq!(s.push(b"ar"), Released::Text("star".into()));
        assert_eq!(s.push(b" sto"), Released::Text(" ".into()));
        assert_eq!(s.finish(), "sto");
    }

    #[test]
    fn earliest_stop_wins() {
        let mut s = TextStream::new(&["b".to_string(), "abc".to_string()]);
        assert_eq!(s.push(b"xabc"), Released::Stop { text: "x".into(), stop: "abc".into() });
    }
}

//! GPT-2 byte-level BPE built from a GGUF file's own vocabulary and merges.
//!
//! Text is split with GPT-2's pre-tokenizer pattern, each piece's UTF-8 bytes are mapped to
//! GPT-2's printable byte alphabet, and merges are applied lowest rank first. Special tokens
//! (control tokens such as `<|endoftext|>`) are matched literally before splitting.

use crate::error::{Error, Result};
use crate::gguf::Gguf;
use regex::Regex;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// GPT-2's pre-tokenizer without its `\s+(?!\S)` look-ahead, which `pieces` applies by hand.
const PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";

/// GGUF `tokenizer.ggml.token_type` value of control tokens.
const TOKEN_TYPE_CONTROL: i64 = 3;

/// A GPT-2 tokenizer.
pub struct Tokenizer {
    /// Raw bytes of every token id.
    token_bytes: Vec<Vec<u8>>,
    /// Token id of every single byte.
    byte_token: [u32; 256],
    /// (left, right) → (rank, merged token).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Special tokens matched literally, longest first.
    specials: Vec<(String, u32)>,
    pattern: Regex,
    eos: u32,
}

/// GPT-2's map from bytes to printable characters: printable Latin-1 bytes stand for
/// themselves, the rest are shifted to U+0100 and up.
pub fn byte_alphabet() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u32 {
        let printable = (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
        let code = if printable {
            b
        } else {
            next += 1;
            next - 1
        };
        table[b as usize] = char::from_u32(code).expect("code points below 0x200 are valid");
    }
    table
}

impl Tokenizer {
    /// Builds the tokenizer from `tokenizer.ggml.*` metadata.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self> {
        match gguf.str("tokenizer.ggml.model")? {
            Some("gpt2") => {}
            other => {
                let got = other.map_or("nothing".to_string(), |s| format!("{s:?}"));
                return Err(Error::model(format!("tokenizer.ggml.model must be \"gpt2\", got {got}")));
            }
        }
        let tokens = gguf.strings("tokenizer.ggml.tokens")?;
        let merges = gguf.strings("tokenizer.ggml.merges")?;
        let types = gguf.integers("tokenizer.ggml.token_type")?;
        let eos = gguf.u32("tokenizer.ggml.eos_token_id")?;
        Self::new(&tokens, &merges, types.as_deref(), eos)
    }

    /// Builds the tokenizer from its tables: token strings in GPT-2's byte alphabet, merges as
    /// `"left right"`, optional GGUF token types, and the end-of-text id.
    pub fn new(tokens: &[&str], merges: &[&str], types: Option<&[i64]>, eos: u32) -> Result<Self> {
        if tokens.is_empty() || tokens.len() > u32::MAX as usize {
            return Err(Error::model(format!("vocabulary has {} tokens", tokens.len())));
        }
        if eos as usize >= tokens.len() {
            return Err(Error::model(format!(
                "tokenizer.ggml.eos_token_id {eos} is outside the vocabulary of {}",
                tokens.len()
            )));
        }
        if let Some(types) = types
            && types.len() != tokens.len()
        {
            return Err(Error::model(format!(
                "tokenizer.ggml.token_type has {} entries for {} tokens",
                types.len(),
                tokens.len()
            )));
        }
        let alphabet = byte_alphabet();
        let mut char_byte = HashMap::with_capacity(256);
        for (b, c) in alphabet.iter().enumerate() {
            char_byte.insert(*c, b as u8);
        }
        let is_special = |id: usize| id == eos as usize || types.is_some_and(|t| t[id] == TOKEN_TYPE_CONTROL);

        let mut ids: HashMap<&str, u32> = HashMap::with_capacity(tokens.len());
        let mut token_bytes = Vec::with_capacity(tokens.len());
        let mut specials = Vec::new();
        for (id, token) in tokens.iter().enumerate() {
            ids.insert(token, id as u32);
            if is_special(id) {
                specials.push((token.to_string(), id as u32));
                token_bytes.push(token.as_bytes().to_vec());
                continue;
            }
            let bytes: Option<Vec<u8>> = token.chars().map(|c| char_byte.get(&c).copied()).collect();
            let bytes = bytes.ok_or_else(|| {
                Error::model(format!("token {id} ({token:?}) has a character outside GPT-2's byte alphabet"))
            })?;
            token_bytes.push(bytes);
        }
        specials.sort_by_key(|(s, _)| Reverse(s.len()));

        let mut byte_token = [0u32; 256];
        for (b, c) in alphabet.iter().enumerate() {
            byte_token[b] = *ids
                .get(c.to_string().as_str())
                .ok_or_else(|| Error::model(format!("the vocabulary has no token for the byte 0x{b:02x}")))?;
        }

        let mut merge_table = HashMap::with_capacity(merges.len());
        for (rank, merge) in merges.iter().enumerate() {
            let (left, right) = merge
                .split_once(' ')
                .ok_or_else(|| Error::model(format!("merge #{rank} ({merge:?}) is not two tokens")))?;
            let lookup = |s: &str| {
                ids.get(s).copied().ok_or_else(|| {
                    Error::model(format!("merge #{rank} ({merge:?}) names {s:?}, not in the vocabulary"))
                })
            };
            let merged = lookup(&format!("{left}{right}"))?;
            merge_table.entry((lookup(left)?, lookup(right)?)).or_insert((rank as u32, merged));
        }

        Ok(Tokenizer {
            token_bytes,
            byte_token,
            merges: merge_table,
            specials,
            pattern: Regex::new(PATTERN).expect("the GPT-2 pattern compiles"),
            eos,
        })
    }

    /// Number of token ids.
    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    /// The end-of-text token id.
    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// Text to token ids.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let next_special = self
                .specials
                .iter()
                .filter_map(|(s, id)| rest.find(s.as_str()).map(|at| (at, s.len(), *id)))
                .min_by_key(|&(at, len, _)| (at, Reverse(len)));
            let plain_end = next_special.map_or(rest.len(), |(at, _, _)| at);
            self.encode_plain(&rest[..plain_end], &mut out);
            match next_special {
                Some((at, len, id)) => {
                    out.push(id);
                    rest = &rest[at + len..];
                }
                None => break,
            }
        }
        out
    }

    /// Encodes text that holds no special token.
    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) {
        let mut start = 0;
        while start < text.len() {
            let m = self.pattern.find_at(text, start).expect("\\s+ or another branch matches any character");
            let mut end = m.end();
            // `\s+(?!\S)`: a run of whitespace followed by a non-space gives up its last
            // character, which then starts the next piece (e.g. " word").
            let piece = &text[m.start()..end];
            if end < text.len() && piece.chars().all(char::is_whitespace) {
                let last = piece.chars().next_back().expect("matches are non-empty");
                if piece.len() > last.len_utf8() {
                    end -= last.len_utf8();
                }
            }
            self.bpe(&text.as_bytes()[start..end], out);
            start = end;
        }
    }

    /// Applies the merges to one piece, lowest rank first, leftmost first among equals.
    fn bpe(&self, bytes: &[u8], out: &mut Vec<u32>) {
        let mut symbols: Vec<u32> = bytes.iter().map(|&b| self.byte_token[b as usize]).collect();
        if symbols.len() > 1 {
            // Doubly linked list over `symbols`; merged-away entries are marked with u32::MAX.
            let n = symbols.len();
            let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
            let mut next: Vec<usize> = (1..=n).collect();
            let mut heap = BinaryHeap::new();
            let push = |heap: &mut BinaryHeap<_>, symbols: &[u32], i: usize, j: usize| {
                if let Some(&(rank, merged)) = self.merges.get(&(symbols[i], symbols[j])) {
                    heap.push(Reverse((rank, i, symbols[i], symbols[j], merged)));
                }
            };
            for i in 0..n - 1 {
                push(&mut heap, &symbols, i, i + 1);
            }
            while let Some(Reverse((_, i, left, right, merged))) = heap.pop() {
                let j = next[i];
                // Skip entries made stale by an earlier merge.
                if j >= n || symbols[i] != left || symbols[j] != right {
                    continue;
                }
                symbols[i] = merged;
                symbols[j] = u32::MAX;
                next[i] = next[j];
                if next[j] < n {
                    prev[next[j]] = i;
                }
                if prev[i] < n {
                    push(&mut heap, &symbols, prev[i], i);
                }
                if next[i] < n {
                    push(&mut heap, &symbols, i, next[i]);
                }
            }
        }
        out.extend(symbols.into_iter().filter(|&s| s != u32::MAX));
    }

    /// The raw bytes of one token, or None for an id outside the vocabulary.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.token_bytes.get(id as usize).map(Vec::as_slice)
    }

    /// Token ids to text; invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut bytes = Vec::new();
        for &id in ids {
            let piece = self.token_bytes(id).ok_or_else(|| {
                Error::request(format!("token id {id} is outside the vocabulary of {}", self.vocab_size()))
            })?;
            bytes.extend_from_slice(piece);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Tokenizer {
        let alphabet = byte_alphabet();
        let mut tokens: Vec<String> = alphabet.iter().map(|c| c.to_string()).collect();
        for t in ["he", "ll", "hell", "hello", "Ġw", "<|endoftext|>"] {
            tokens.push(t.to_string());
        }
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        let eos = (refs.len() - 1) as u32;
        Tokenizer::new(&refs, &["h e", "l l", "he ll", "hell o", "Ġ w"], None, eos).unwrap()
    }

    #[test]
    fn merges_lowest_rank_first_and_round_trips() {
        let t = toy();
        let ids = t.encode("hello world<|endoftext|>");
        assert_eq!(ids[0], 259); // "hello"
        assert_eq!(ids[1], 260); // " w"
        assert_eq!(*ids.last().unwrap(), t.eos());
        assert_eq!(t.decode(&ids).unwrap(), "hello world<|endoftext|>");
    }

    #[test]
    fn whitespace_run_leaves_its_last_space_to_the_next_word() {
        let t = toy();
        let ids = t.encode("a   w");
        let text: Vec<String> = ids.iter().map(|&i| t.decode(&[i]).unwrap()).collect();
        assert_eq!(text, ["a", " ", " ", " w"]);
    }
}

//! Incremental detokenization: turns generated ids into text pieces as they arrive, holding back a UTF-8 character
//! split across byte-level tokens until it is complete.

use super::{TokenizerError, decode_ids};
use std::sync::Arc;

/// Streaming decoder from [`super::Tokenizer::stream_decoder`]. Special tokens are left out, as in
/// [`super::Tokenizer::decode`]; the concatenation of every piece returned by [`Self::push`] and [`Self::finish`]
/// equals `decode` of all pushed ids.
///
/// It keeps a small window of ids: the ids already emitted since the last boundary (context) and the ids not yet
/// emitted. A piece is emitted once decoding the window grows the text and the text does not end in U+FFFD (an
/// incomplete UTF-8 sequence), so no piece ever ends inside a character.
pub struct StreamDecoder {
    hf: Arc<tokenizers::Tokenizer>,
    vocab_size: usize,
    /// Ids from the start of the context window.
    ids: Vec<u32>,
    /// `ids[..read_offset]` has been emitted.
    read_offset: usize,
}

impl std::fmt::Debug for StreamDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamDecoder")
            .field("ids", &self.ids)
            .field("read_offset", &self.read_offset)
            .finish()
    }
}

impl StreamDecoder {
    pub(super) fn new(hf: Arc<tokenizers::Tokenizer>, vocab_size: usize) -> Self {
        Self {
            hf,
            vocab_size,
            ids: Vec::new(),
            read_offset: 0,
        }
    }

    /// Adds one generated id; returns the newly completed text, or `None` while a character is still incomplete (or
    /// the id was a special token).
    pub fn push(&mut self, id: u32) -> Result<Option<String>, TokenizerError> {
        if id as usize >= self.vocab_size {
            return Err(TokenizerError::IdOutOfRange {
                id,
                vocab_size: self.vocab_size,
            });
        }
        self.ids.push(id);
        let (prefix, full) = self.decode_window()?;
        if full.len() <= prefix.len() || full.ends_with(char::REPLACEMENT_CHARACTER) {
            return Ok(None);
        }
        let Some(piece) = full.strip_prefix(prefix.as_str()) else {
            // Cannot happen for byte-level BPE (a window boundary is a character boundary); wait for `finish`.
            return Ok(None);
        };
        let piece = piece.to_string();
        // Drop the old context; the ids just emitted become the context for the next piece.
        self.ids.drain(..self.read_offset);
        self.read_offset = self.ids.len();
        Ok(Some(piece))
    }

    /// Decodes the already-emitted context and the context plus the held-back ids.
    fn decode_window(&self) -> Result<(String, String), TokenizerError> {
        let prefix = decode_ids(
            &self.hf,
            self.vocab_size,
            &self.ids[..self.read_offset],
            true,
        )?;
        let full = decode_ids(&self.hf, self.vocab_size, &self.ids, true)?;
        Ok((prefix, full))
    }

    /// Emits whatever is still held back (an incomplete character decodes as U+FFFD) and resets the decoder.
    pub fn finish(&mut self) -> Result<Option<String>, TokenizerError> {
        let (prefix, full) = self.decode_window()?;
        self.ids.clear();
        self.read_offset = 0;
        let piece = match full.strip_prefix(prefix.as_str()) {
            Some(rest) => rest.to_string(),
            None => full,
        };
        Ok(Some(piece).filter(|p| !p.is_empty()))
    }
}

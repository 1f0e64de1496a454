//! Text stop strings: they truncate the returned text and never change the committed program (DESIGN §4). The text
//! ends where a stop string first *ends* (ties: the earliest start) and excludes it; streaming holds back just enough
//! text to give exactly the same result as truncating the whole text at once.

/// Where `text` is cut by the first stop string to complete: the byte offset of that occurrence's start.
pub fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()).map(|start| (start + s.len(), start)))
        .min()
        .map(|(_, start)| start)
}

/// `text` truncated at the first stop string; whether one was found.
pub fn truncate(text: &str, stops: &[String]) -> (String, bool) {
    match find_stop(text, stops) {
        Some(cut) => (text[..cut].to_string(), true),
        None => (text.to_string(), false),
    }
}

/// Incremental stop-string matching for streams.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text received but not yet emitted.
    pending: String,
    /// Longest stop string, in bytes.
    hold: usize,
    stopped: bool,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings ignored).
    pub fn new(stops: &[String]) -> Self {
        let stops: Vec<String> = stops.iter().filter(|s| !s.is_empty()).cloned().collect();
        let hold = stops.iter().map(String::len).max().unwrap_or(0);
        Self {
            stops,
            pending: String::new(),
            hold,
            stopped: false,
        }
    }

    /// Whether a stop string was found (nothing more is emitted).
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Adds text; returns the text that is now safe to emit.
    pub fn push(&mut self, piece: &str) -> String {
        if self.stopped {
            return String::new();
        }
        self.pending.push_str(piece);
        if let Some(cut) = find_stop(&self.pending, &self.stops) {
            self.stopped = true;
            let out = self.pending[..cut].to_string();
            self.pending.clear();
            return out;
        }
        // Keep the last `hold - 1` bytes: a stop string may still complete across them.
        let keep = self.hold.saturating_sub(1);
        let mut split = self.pending.len().saturating_sub(keep);
        while !self.pending.is_char_boundary(split) {
            split -= 1;
        }
        let rest = self.pending.split_off(split);
        std::mem::replace(&mut self.pending, rest)
    }

    /// The held-back text at the end of the stream.
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn earliest_end_wins() {
        assert_eq!(
            truncate("abcd", &stops(&["abcd", "c"])),
            ("ab".into(), true)
        );
        assert_eq!(truncate("xx\nyy", &stops(&["\n"])), ("xx".into(), true));
        assert_eq!(truncate("none", &stops(&["z", ""])), ("none".into(), false));
    }

    #[test]
    fn streaming_equals_whole_text_for_every_split() {
        let text = "héllo wörld, the end. More text";
        let cases = [
            stops(&["wör"]),
            stops(&["end.", "o w"]),
            stops(&["zz"]),
            stops(&["t"]),
        ];
        for s in &cases {
            let (whole, _) = truncate(text, s);
            // Every way of cutting the text into two or three pieces at char boundaries.
            let bounds: Vec<usize> = (0..=text.len())
                .filter(|&i| text.is_char_boundary(i))
                .collect();
            for &a in &bounds {
                for &b in bounds.iter().filter(|&&b| b >= a) {
                    let mut m = StopMatcher::new(s);
                    let mut out = String::new();
                    for piece in [&text[..a], &text[a..b], &text[b..]] {
                        out.push_str(&m.push(piece));
                    }
                    out.push_str(&m.finish());
                    assert_eq!(out, whole, "stops {s:?}, split {a}/{b}");
                }
            }
        }
    }
}

//! Request ids: 32 random bytes, the leaf's `requestId`. Shown as `0x…` (header `x-verinfer-request-id`, receipts)
//! and inside the OpenAI response id (`chatcmpl-<hex>`, `cmpl-<hex>`).

use protocol::B256;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which OpenAI endpoint a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/completions`.
    Completion,
}

impl RequestKind {
    /// Name stored in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Completion => "completion",
        }
    }

    /// Inverse of [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "chat" => Some(Self::Chat),
            "completion" => Some(Self::Completion),
            _ => None,
        }
    }

    /// Prefix of the OpenAI response id.
    pub const fn id_prefix(self) -> &'static str {
        match self {
            Self::Chat => "chatcmpl",
            Self::Completion => "cmpl",
        }
    }
}

/// A request id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub B256);

impl RequestId {
    /// A fresh id from the operating system's random source.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(Self(B256::from(bytes)))
    }

    /// The OpenAI response id: `chatcmpl-<64 hex>` or `cmpl-<64 hex>`.
    pub fn response_id(&self, kind: RequestKind) -> String {
        format!("{}-{}", kind.id_prefix(), hex::encode(self.0))
    }

    /// Parses `0x<hex>`, bare hex, `chatcmpl-<hex>` or `cmpl-<hex>` (64 hex digits).
    pub fn parse_any(s: &str) -> Option<Self> {
        let hex_part = s
            .strip_prefix("chatcmpl-")
            .or_else(|| s.strip_prefix("cmpl-"))
            .or_else(|| s.strip_prefix("0x"))
            .unwrap_or(s);
        if hex_part.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes).ok()?;
        Some(Self(B256::from(bytes)))
    }

    /// Parses raw database bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes)
            .ok()
            .map(|b| Self(B256::from(b)))
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_every_spelling() {
        let id = RequestId::random().expect("os random source");
        for s in [
            id.to_string(),
            id.response_id(RequestKind::Chat),
            id.response_id(RequestKind::Completion),
            hex::encode(id.0),
        ] {
            assert_eq!(RequestId::parse_any(&s), Some(id), "{s}");
        }
        assert_eq!(RequestId::parse_any("chatcmpl-zz"), None);
        assert_eq!(RequestId::parse_any(""), None);
    }
}

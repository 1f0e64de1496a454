//! How JSON-RPC failures map to [`L1Error`] and which ones are worth retrying.
//!
//! Node error messages are not standardised; the substrings below cover geth, reth, erigon, nethermind, besu and
//! anvil as of 2026 (compared lowercase).

use crate::l1::L1Error;
use alloy::transports::{RpcError, TransportError};
use std::time::Duration;

/// Whether a failed request may succeed when repeated unchanged: connection failures, timeouts, HTTP 429/5xx, and
/// the rate-limit error responses alloy knows.
pub(crate) fn is_transient(e: &TransportError) -> bool {
    match e {
        RpcError::Transport(kind) => {
            if kind.is_non_retryable() {
                return false;
            }
            match kind.as_http_error() {
                Some(http) => http.status == 429 || http.status >= 500 || kind.is_retry_err(),
                None => true,
            }
        }
        RpcError::ErrorResp(payload) => payload.is_retry_err(),
        _ => false,
    }
}

/// The delay a server asked for (`Retry-After`).
pub(crate) fn retry_after(e: &TransportError) -> Option<Duration> {
    match e {
        RpcError::Transport(kind) => kind.retry_after(),
        _ => None,
    }
}

/// A failure of a read or of a node-side operation: [`L1Error::Backend`].
pub(crate) fn backend(e: &TransportError, redact: &Redactor) -> L1Error {
    L1Error::Backend(redact.apply(&e.to_string()))
}

/// A failure of `eth_call`/`eth_estimateGas`: a revert keeps its data (as the embedded chain reports it), a refusal
/// before execution is [`L1Error::Rejected`], any other execution failure is [`L1Error::Halted`]; transport failures
/// are [`L1Error::Backend`]. The gas used is not reported by nodes (0).
pub(crate) fn execution(e: &TransportError, redact: &Redactor) -> L1Error {
    let RpcError::ErrorResp(payload) = e else {
        return backend(e, redact);
    };
    let message = payload.message.to_lowercase();
    if message.contains("revert") {
        return L1Error::Reverted {
            data: payload.as_revert_data().unwrap_or_default(),
            gas_used: 0,
        };
    }
    if is_unsupported(e) || payload.is_retry_err() {
        return backend(e, redact);
    }
    if REJECTIONS.iter().any(|r| message.contains(r)) {
        return L1Error::Rejected(payload.message.to_string());
    }
    L1Error::Halted {
        reason: payload.message.to_string(),
        gas_used: 0,
    }
}

/// Refusals before execution (the transaction is invalid, not its execution).
const REJECTIONS: &[&str] = &[
    "insufficient funds",
    "nonce",
    "intrinsic gas",
    "gas limit",
    "fee cap",
    "max fee per gas",
    "underpriced",
    "chain id",
    "sender not an eoa",
    "not supported",
    "exceeds the configured cap",
];

/// Why a node refused `eth_sendRawTransaction`.
#[derive(Debug)]
pub(crate) enum BroadcastError {
    /// The nonce was already used (mined).
    NonceTooLow,
    /// The node already has this exact transaction.
    AlreadyKnown,
    /// Another transaction with this nonce is pending and pays at least as much.
    ReplacementUnderpriced,
    /// Any other refusal.
    Rejected(String),
    /// Transport failure after retries: the node may or may not have the transaction.
    Unknown(TransportError),
}

pub(crate) fn broadcast(e: TransportError) -> BroadcastError {
    let RpcError::ErrorResp(payload) = &e else {
        return BroadcastError::Unknown(e);
    };
    let message = payload.message.to_lowercase();
    if message.contains("nonce too low")
        || message.contains("nonce is too low")
        || message.contains("oldnonce")
        || message.contains("nonce has already been used")
    {
        BroadcastError::NonceTooLow
    } else if message.contains("already known")
        || message.contains("already imported")
        || message.contains("alreadyknown")
        || message.contains("known transaction")
        || message.contains("already in the pool")
    {
        BroadcastError::AlreadyKnown
    } else if message.contains("replacement transaction underpriced")
        || message.contains("replacement underpriced")
        || message.contains("replacementnotallowed")
    {
        BroadcastError::ReplacementUnderpriced
    } else if payload.is_retry_err() {
        BroadcastError::Unknown(e)
    } else {
        BroadcastError::Rejected(payload.message.to_string())
    }
}

/// Whether the node does not offer the method (a development-only method on a production node).
pub(crate) fn is_unsupported(e: &TransportError) -> bool {
    let RpcError::ErrorResp(payload) = e else {
        return false;
    };
    let message = payload.message.to_lowercase();
    payload.code == -32601
        || payload.code == -32004
        || message.contains("method not found")
        || message.contains("does not exist")
        || message.contains("not available")
        || message.contains("unsupported method")
        || message.contains("method not supported")
}

/// Removes the RPC URL's path, query and credentials from error messages: a provider's API key often lives there,
/// and reqwest errors quote the URL.
#[derive(Debug, Clone)]
pub(crate) struct Redactor {
    full: String,
    shown: String,
}

impl Redactor {
    pub(crate) fn new(url: &alloy::transports::http::reqwest::Url) -> Self {
        let mut shown = format!("{}://", url.scheme());
        if let Some(host) = url.host_str() {
            shown.push_str(host);
        }
        if let Some(port) = url.port() {
            shown.push_str(&format!(":{port}"));
        }
        Self {
            full: url.as_str().to_string(),
            shown,
        }
    }

    pub(crate) fn none() -> Self {
        Self {
            full: String::new(),
            shown: String::new(),
        }
    }

    pub(crate) fn apply(&self, message: &str) -> String {
        if self.full.is_empty()
            || self.full == self.shown
            || self.full == format!("{}/", self.shown)
        {
            return message.to_string();
        }
        message.replace(&self.full, &format!("{}/<redacted>", self.shown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::rpc::json_rpc::ErrorPayload;

    fn resp(code: i64, message: &'static str, data: Option<&str>) -> TransportError {
        RpcError::ErrorResp(ErrorPayload {
            code,
            message: message.into(),
            data: data.map(|d| serde_json::value::RawValue::from_string(d.to_string()).unwrap()),
        })
    }

    #[test]
    fn reverts_keep_their_data() {
        let r = Redactor::none();
        let e = execution(&resp(3, "execution reverted", Some("\"0xdeadbeef\"")), &r);
        assert!(
            matches!(e, L1Error::Reverted { ref data, .. } if data.as_ref() == [0xde, 0xad, 0xbe, 0xef])
        );
        let e = execution(&resp(3, "execution reverted", None), &r);
        assert!(matches!(e, L1Error::Reverted { ref data, .. } if data.is_empty()));
        let e = execution(
            &resp(-32000, "insufficient funds for gas * price + value", None),
            &r,
        );
        assert!(matches!(e, L1Error::Rejected(_)));
        let e = execution(&resp(-32603, "EVM error InvalidFEOpcode", None), &r);
        assert!(matches!(e, L1Error::Halted { .. }));
    }

    #[test]
    fn broadcast_errors() {
        assert!(matches!(
            broadcast(resp(-32000, "nonce too low", None)),
            BroadcastError::NonceTooLow
        ));
        assert!(matches!(
            broadcast(resp(-32000, "already known", None)),
            BroadcastError::AlreadyKnown
        ));
        assert!(matches!(
            broadcast(resp(-32000, "replacement transaction underpriced", None)),
            BroadcastError::ReplacementUnderpriced
        ));
        assert!(matches!(
            broadcast(resp(-32003, "insufficient funds", None)),
            BroadcastError::Rejected(_)
        ));
        assert!(matches!(
            broadcast(resp(429, "rate limited", None)),
            BroadcastError::Unknown(_)
        ));
    }

    #[test]
    fn transient_errors() {
        assert!(is_transient(&resp(-32005, "limit exceeded", None)));
        assert!(!is_transient(&resp(3, "execution reverted", None)));
        assert!(is_transient(
            &alloy::transports::TransportErrorKind::http_error(503, String::new())
        ));
        assert!(!is_transient(
            &alloy::transports::TransportErrorKind::http_error(400, String::new())
        ));
        assert!(is_transient(
            &alloy::transports::TransportErrorKind::custom_str("connection refused")
        ));
    }

    #[test]
    fn redacts_url_secrets() {
        let url = "https://eth.example.com/v3/secretkey".parse().unwrap();
        let r = Redactor::new(&url);
        let msg = r.apply("error sending request for url (https://eth.example.com/v3/secretkey)");
        assert!(!msg.contains("secretkey"), "{msg}");
        assert!(msg.contains("https://eth.example.com/<redacted>"));
    }
}

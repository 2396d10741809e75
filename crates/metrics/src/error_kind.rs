//! What kind of error a client met: the one list of kinds, named once, from the device that
//! counts an error to the report, the findings and the Prometheus labels.

use serde::{Deserialize, Serialize};

/// Errors of one kind: how many, and the latest detail.
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct ErrorGroup {
    pub count: u64,
    pub latest: String,
}

impl ErrorGroup {
    /// Count one more error of this kind.
    pub fn record(&mut self, detail: String) {
        self.count += 1;
        self.latest = detail;
    }
}

/// An error's kind. The report's `errors` table and a fault's `connection_errors_by` are keyed
/// by [`ErrorKind::name`]; serde reads and writes it through that name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum ErrorKind {
    // In the order of their names, so that a table keyed by kind reads alphabetically.
    /// A controller could not send a command.
    Command,
    /// The broker refused a CONNECT.
    ConnectRefused,
    /// A client ended before its connection was up.
    Connection,
    /// A message that is not fleetbench's arrived where data was expected.
    Decode,
    /// The interval log could not be written or read back.
    Hlog,
    /// The connection's socket failed or was closed.
    Io,
    /// The broker broke the protocol or ended the connection.
    Protocol,
    /// A device could not publish.
    Publish,
    /// A device could not answer a command.
    Reply,
    /// A device could not publish its status.
    Status,
    /// A SUBSCRIBE could not be sent.
    Subscribe,
    /// Connecting (or an answer) took longer than allowed.
    Timeout,
    /// The TLS handshake failed.
    Tls,
    /// The WebSocket upgrade failed.
    Websocket,
}

impl ErrorKind {
    /// The kinds that name a failed or lost connection, in the order a finding looks for the
    /// latest cause.
    pub const CONNECTION: [ErrorKind; 7] = [
        ErrorKind::ConnectRefused,
        ErrorKind::Io,
        ErrorKind::Timeout,
        ErrorKind::Tls,
        ErrorKind::Websocket,
        ErrorKind::Connection,
        ErrorKind::Protocol,
    ];

    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::Command,
        ErrorKind::ConnectRefused,
        ErrorKind::Connection,
        ErrorKind::Decode,
        ErrorKind::Hlog,
        ErrorKind::Io,
        ErrorKind::Protocol,
        ErrorKind::Publish,
        ErrorKind::Reply,
        ErrorKind::Status,
        ErrorKind::Subscribe,
        ErrorKind::Timeout,
        ErrorKind::Tls,
        ErrorKind::Websocket,
    ];

    /// Its name in reports and logs.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorKind::Command => "command",
            ErrorKind::ConnectRefused => "connect refused",
            ErrorKind::Connection => "connection",
            ErrorKind::Decode => "decode",
            ErrorKind::Hlog => "hlog",
            ErrorKind::Io => "io",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Publish => "publish",
            ErrorKind::Reply => "reply",
            ErrorKind::Status => "status",
            ErrorKind::Subscribe => "subscribe",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Tls => "tls",
            ErrorKind::Websocket => "websocket",
        }
    }

    /// Its name as a Prometheus label value (no spaces).
    pub const fn label(self) -> &'static str {
        match self {
            ErrorKind::ConnectRefused => "connect_refused",
            other => other.name(),
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<ErrorKind> for &'static str {
    fn from(k: ErrorKind) -> &'static str {
        k.name()
    }
}

/// A name that is no error kind.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an error kind")]
pub struct UnknownKind(String);

impl TryFrom<String> for ErrorKind {
    type Error = UnknownKind;

    fn try_from(name: String) -> Result<ErrorKind, UnknownKind> {
        (ErrorKind::ALL.into_iter())
            .find(|k| k.name() == name)
            .ok_or(UnknownKind(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_name_and_sorts_as_its_name() {
        for k in ErrorKind::ALL {
            let json = serde_json::to_string(&k).expect("json");
            assert_eq!(json, format!("\"{}\"", k.name()));
            assert_eq!(serde_json::from_str::<ErrorKind>(&json).expect("back"), k);
            assert!(!k.label().contains(' '), "{k}");
        }
        let mut names: Vec<_> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        let in_order: Vec<_> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names, in_order);
        let mut sorted = ErrorKind::ALL;
        sorted.sort();
        assert_eq!(sorted, ErrorKind::ALL);
        assert!(serde_json::from_str::<ErrorKind>("\"gremlins\"").is_err());
    }
}

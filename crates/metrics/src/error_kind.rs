//! What kind of error a client met: the one list of kinds, named once, from the device that
//! counts an error to the report, the findings and the Prometheus labels.

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

fleetbench_scenario::named_kinds! {
    /// An error's kind. The report's `errors` table and a fault's `connection_errors_by` are
    /// keyed by its name; serde reads and writes it through that name. In the order of their
    /// names, so that a table keyed by kind reads alphabetically.
    pub enum ErrorKind, error UnknownKind ("an error kind") {
        /// A controller could not send a command.
        Command => "command",
        /// The broker refused a CONNECT.
        ConnectRefused => "connect refused",
        /// A client ended before its connection was up.
        Connection => "connection",
        /// A message that is not fleetbench's arrived where data was expected.
        Decode => "decode",
        /// The interval log could not be written or read back.
        Hlog => "hlog",
        /// The connection's socket failed or was closed.
        Io => "io",
        /// The broker broke the protocol or ended the connection.
        Protocol => "protocol",
        /// A device could not publish.
        Publish => "publish",
        /// A device could not answer a command.
        Reply => "reply",
        /// A device could not publish its status.
        Status => "status",
        /// A SUBSCRIBE could not be sent.
        Subscribe => "subscribe",
        /// Connecting (or an answer) took longer than allowed.
        Timeout => "timeout",
        /// The TLS handshake failed.
        Tls => "tls",
        /// The WebSocket upgrade failed.
        Websocket => "websocket",
    }
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

    /// Its name as a Prometheus label value (no spaces).
    pub const fn label(self) -> &'static str {
        match self {
            ErrorKind::ConnectRefused => "connect_refused",
            other => other.name(),
        }
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

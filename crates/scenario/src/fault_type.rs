//! The kinds of fault, as names: what a `[[fault]]`'s `kind` says and what a report's fault row
//! carries. The fault itself, with what it does, is [`crate::FaultKind`].

use serde::{Deserialize, Serialize};

/// Which kind of fault (by default the first, a disconnect, for rows built field by field).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(into = "&'static str", try_from = "String")]
pub enum FaultType {
    #[default]
    Disconnect,
    Churn,
    BrokerRestart,
    Network,
    SlowConsumer,
}

impl FaultType {
    pub const ALL: [FaultType; 5] = [
        FaultType::Disconnect,
        FaultType::Churn,
        FaultType::BrokerRestart,
        FaultType::Network,
        FaultType::SlowConsumer,
    ];

    /// Its name in scenarios and reports.
    pub const fn name(self) -> &'static str {
        match self {
            FaultType::Disconnect => "disconnect",
            FaultType::Churn => "churn",
            FaultType::BrokerRestart => "broker_restart",
            FaultType::Network => "network",
            FaultType::SlowConsumer => "slow_consumer",
        }
    }

    /// Whether it lasts a window (`for`); a disconnect happens at once.
    pub const fn windowed(self) -> bool {
        matches!(
            self,
            FaultType::Churn | FaultType::Network | FaultType::SlowConsumer
        )
    }
}

impl std::fmt::Display for FaultType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A fault row's kind compared with a name, as tests and readers of reports ask.
impl PartialEq<&str> for FaultType {
    fn eq(&self, name: &&str) -> bool {
        self.name() == *name
    }
}

impl From<FaultType> for &'static str {
    fn from(t: FaultType) -> &'static str {
        t.name()
    }
}

/// A name that is no kind of fault.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a fault; expected one of {names:?}", names = FaultType::ALL.map(FaultType::name))]
pub struct NotAFault(pub String);

impl TryFrom<String> for FaultType {
    type Error = NotAFault;

    fn try_from(name: String) -> Result<FaultType, NotAFault> {
        (FaultType::ALL.into_iter())
            .find(|t| t.name() == name)
            .ok_or(NotAFault(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_type_reads_back_from_its_name() {
        for t in FaultType::ALL {
            let json = serde_json::to_string(&t).expect("json");
            assert_eq!(json, format!("\"{}\"", t.name()));
            assert_eq!(serde_json::from_str::<FaultType>(&json).expect("back"), t);
        }
        let e = FaultType::try_from("outage".to_string()).expect_err("no such fault");
        assert!(e.to_string().contains("\"broker_restart\""), "{e}");
    }
}

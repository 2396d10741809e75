//! The kinds of fault, as names: what a `[[fault]]`'s `kind` says and what a report's fault row
//! carries. The fault itself, with what it does, is [`crate::FaultKind`].

crate::named_kinds! {
    /// Which kind of fault (by default the first, a disconnect, for rows built field by field).
    #[derive(Default)]
    pub enum FaultType, error NotAFault ("a fault") {
        #[default]
        Disconnect => "disconnect",
        Churn => "churn",
        BrokerRestart => "broker_restart",
        Network => "network",
        SlowConsumer => "slow_consumer",
    }
}

impl FaultType {
    /// Whether it lasts a window (`for`); a disconnect happens at once.
    pub const fn windowed(self) -> bool {
        matches!(
            self,
            FaultType::Churn | FaultType::Network | FaultType::SlowConsumer
        )
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

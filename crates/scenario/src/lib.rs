//! The fleetbench scenario model.
//!
//! A scenario file (TOML) is parsed into wire types that remember where each value stood
//! ([`raw`]), validated into the [`Scenario`] model, and expanded into a [`Plan`]: one entry per
//! virtual device and per observer, with rendered client ids, topics and schedules.
//!
//! This crate is pure: no IO, no async runtime. Callers read the file and pass its text.

mod durations;
mod error;
pub mod fault_grid;
mod fault_type;
pub mod load;
pub mod metric;
mod model;
mod named;
pub mod payload;
mod plan;
mod raw;
mod shard;
pub mod topic;
mod validate;

pub use error::{Located, Location, ScenarioError, ScenarioErrors};
pub use fault_grid::FaultGrid;
pub use fault_type::{FaultType, NotAFault};
pub use metric::Metric;
pub use model::{
    url_host, Backoff, BrokerTarget, Commands, Controller, DeviceGroup, DeviceMessage,
    EmbeddedSettings, Expectations, ExternalBroker, Fault, FaultKind, GroupBehaviour, Mqtt5Publish,
    NetworkFault, ObserverGroup, Offline, Protocol, Qos, Regression, Scenario, Scheme, TlsFiles,
    WhileDown,
};
pub use plan::{
    CommandTopics, ControllerSpec, DeviceSpec, MessageSpec, ObserverSpec, Plan, PACKET_OVERHEAD,
};
pub use shard::{check_sharding, Shard, ShardingError};
pub use validate::{external_url, MAX_MQTT_STRING};

/// The JSON Schema of scenario files, generated from the types that read them.
pub fn json_schema() -> schemars::Schema {
    schemars::schema_for!(raw::RawScenario)
}

/// Parse and validate a scenario from its text. `file` names the source in error messages.
pub fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioErrors> {
    validate::parse(file, text)
}

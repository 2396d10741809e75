//! How the model writes a duration when it is serialized (the resolved scenario in a report):
//! as a scenario file would say it ("1m 30s").

use std::time::Duration;

use serde::Serializer;

pub(crate) fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

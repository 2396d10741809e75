//! Logs go to stderr (stdout is for results). rumqttd logs every connection at info and every
//! ordinary disconnect at error, so it is silent unless asked (-vv, or RUST_LOG=rumqttd=warn).

use tracing_subscriber::EnvFilter;

pub struct LogGuard;

pub fn init(verbose: u8) -> LogGuard {
    let default = match verbose {
        0 => "warn,rumqttd=off,rumqttc=warn",
        1 => "info,rumqttd=off,rumqttc=warn",
        _ => "debug,rumqttd=warn,rumqttc=info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .try_init();
    LogGuard
}

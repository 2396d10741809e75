//! Validation of the `[broker]` table: the embedded broker's settings, or an external broker's
//! URL (parsed with the `url` crate), credentials and certificates. A URL is never echoed in an
//! error: it may carry a password.

use super::ctx::{Ctx, MAX_MQTT_STRING, R};
use crate::error::Located;
use crate::model::{BrokerTarget, EmbeddedSettings, ExternalBroker, Scheme, TlsFiles};
use crate::raw::{RawBroker, S};

pub(crate) fn broker(cx: &Ctx, b: Option<&S<RawBroker>>, clients: u64) -> R<BrokerTarget> {
    let default_listeners = clients.div_ceil(1_000).clamp(2, 16) as u16;
    let Some(b) = b else {
        return Ok(BrokerTarget::Embedded(EmbeddedSettings {
            listeners: default_listeners,
            tcp_nodelay: true,
            child_process: false,
        }));
    };
    let b = b.get_ref();
    let Some(url) = &b.url else {
        return embedded(cx, b, default_listeners);
    };
    external(cx, b, url)
}

pub(crate) fn embedded(cx: &Ctx, b: &RawBroker, default_listeners: u16) -> R<BrokerTarget> {
    let external_only = [
        &b.username,
        &b.password_env,
        &b.ca_file,
        &b.client_cert,
        &b.client_key,
    ];
    if let Some(u) = external_only.into_iter().flatten().next() {
        return Err(cx.err(
            u.span(),
            "broker",
            "credentials and certificates apply to an external broker; set broker.url as well",
        ));
    }
    let listeners = match &b.listeners {
        Some(l) => cx.count(l, "broker.listeners", 1, 64)? as u16,
        None => default_listeners,
    };
    let child_process = match &b.process {
        None => false,
        Some(p) => match p.get_ref().as_str() {
            "in-process" => false,
            "child" => true,
            other => {
                return Err(cx.err(
                    p.span(),
                    "broker.process",
                    format!("{other:?}: expected \"in-process\" (default) or \"child\""),
                ))
            }
        },
    };
    Ok(BrokerTarget::Embedded(EmbeddedSettings {
        listeners,
        tcp_nodelay: b.tcp_nodelay.as_ref().is_none_or(|v| *v.get_ref()),
        child_process,
    }))
}

/// An external broker from its URL, credentials and certificates.
pub(crate) fn external(cx: &Ctx, b: &RawBroker, url: &S<String>) -> R<BrokerTarget> {
    for (field, v) in [
        ("broker.listeners", b.listeners.as_ref().map(|v| v.span())),
        ("broker.process", b.process.as_ref().map(|v| v.span())),
    ] {
        if let Some(span) = v {
            return Err(cx.err(
                span,
                field,
                "applies to the embedded broker only; remove it or remove broker.url",
            ));
        }
    }
    let target = parse_url(cx, url)?;
    let located = |v: &Option<S<String>>, field: &str| {
        v.as_ref().map(|v| Located {
            value: v.get_ref().clone(),
            at: cx.location(v.span()),
            field: format!("broker.{field}"),
        })
    };
    let tls = TlsFiles {
        ca_file: located(&b.ca_file, "ca_file"),
        client_cert: located(&b.client_cert, "client_cert"),
        client_key: located(&b.client_key, "client_key"),
    };
    if !target.scheme.uses_tls() {
        if let Some(f) = [&b.ca_file, &b.client_cert, &b.client_key]
            .into_iter()
            .flatten()
            .next()
        {
            return Err(cx.err(
                f.span(),
                "broker",
                format!(
                    "certificates apply to TLS connections; use an mqtts:// or wss:// URL instead of {}://",
                    target.scheme.as_str()
                ),
            ));
        }
    }
    match (&b.client_cert, &b.client_key) {
        (Some(v), None) | (None, Some(v)) => {
            return Err(cx.err(
                v.span(),
                "broker",
                "client_cert and client_key go together: set both or neither",
            ))
        }
        _ => {}
    }
    credentials(cx, b)?;
    Ok(BrokerTarget::External(Box::new(ExternalBroker {
        tls,
        username: b.username.as_ref().map(|u| u.get_ref().clone()),
        password_env: located(&b.password_env, "password_env"),
        ..target
    })))
}

/// A user name needs no password, but a password needs a user name (MQTT 3.1.1 has no password
/// without one); both fit MQTT's strings, and the variable's name is one a shell can set.
pub(crate) fn credentials(cx: &Ctx, b: &RawBroker) -> R<()> {
    if let Some(u) = &b.username {
        if u.get_ref().len() > MAX_MQTT_STRING {
            return Err(cx.err(
                u.span(),
                "broker.username",
                format!(
                    "is {} bytes long; MQTT allows at most {MAX_MQTT_STRING}",
                    u.get_ref().len()
                ),
            ));
        }
    }
    let Some(var) = &b.password_env else {
        return Ok(());
    };
    if b.username.is_none() {
        return Err(cx.err(
            var.span(),
            "broker.password_env",
            "a password without a user name would be ignored and the run would connect \
             anonymously; set broker.username as well",
        ));
    }
    let name = var.get_ref();
    let shell_name = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !shell_name {
        return Err(cx.err(
            var.span(),
            "broker.password_env",
            format!(
                "{name:?} is not the name of an environment variable; expected letters, digits \
                 and '_', such as \"FLEET_PASSWORD\""
            ),
        ));
    }
    Ok(())
}

/// Scheme, host, port and WebSocket path of a broker URL (the rest of [`ExternalBroker`] empty).
pub(crate) fn parse_url(cx: &Ctx, url: &S<String>) -> R<ExternalBroker> {
    external_url(url.get_ref()).map_err(|why| cx.err(url.span(), "broker.url", why))
}

/// An external broker from its URL alone (scheme, host, port, WebSocket path), as
/// `--broker-url` gives it. The error says what is wrong and never echoes the URL: it may carry
/// a password.
pub fn external_url(url: &str) -> Result<ExternalBroker, String> {
    let fail = |why: String| format!("{why}; expected a URL such as \"mqtt://127.0.0.1:1883\"");
    let parsed =
        url::Url::parse(url.trim()).map_err(|e| fail(format!("not a broker URL ({e})")))?;
    // Checked before anything else, and never echoed: a password must not reach a log.
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "the URL carries a user name or password (not shown here); credentials in \
                    a URL end up in logs, reports and shell history: remove them and give the \
                    user name and password apart (broker.username and broker.password_env, or \
                    FLEETBENCH_BROKER_USERNAME and FLEETBENCH_BROKER_PASSWORD)"
                .into(),
        );
    }
    let scheme = match parsed.scheme() {
        "mqtt" | "tcp" => Scheme::Mqtt,
        "mqtts" | "ssl" => Scheme::Mqtts,
        "ws" => Scheme::Ws,
        "wss" => Scheme::Wss,
        other => {
            return Err(format!(
                "unsupported scheme {other:?}; expected \"mqtt\", \"mqtts\", \"ws\" or \"wss\""
            ))
        }
    };
    let host = match parsed.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        _ => return Err(fail("the URL names no host".into())),
    };
    let port = parsed.port().unwrap_or(scheme.default_port());
    if port == 0 {
        return Err(fail("port 0 cannot be connected to".into()));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(fail("a broker URL has no query or fragment".into()));
    }
    let path = match (scheme.is_websocket(), parsed.path().trim_end_matches('/')) {
        (true, "") => "/mqtt".to_string(),
        (true, p) => p.to_string(),
        (false, "") => String::new(),
        (false, p) => return Err(format!("{p:?}: only ws:// and wss:// URLs have a path")),
    };
    Ok(ExternalBroker {
        scheme,
        host,
        port,
        path,
        tls: TlsFiles::default(),
        username: None,
        password_env: None,
    })
}

//! How clients reach the broker: plain TCP, TLS, WebSocket or WebSocket over TLS. The TLS
//! configuration is built once per run (certificates read and checked before the first
//! connection) and shared by every client.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// One TLS client configuration, shared by every client of a run.
pub type TlsConfig = Arc<ClientConfig>;

/// The transport every client of a run uses.
#[derive(Debug, Clone, Default)]
pub enum Transport {
    #[default]
    Tcp,
    Tls(Arc<ClientConfig>),
    /// WebSocket on this HTTP path.
    Ws {
        path: String,
    },
    Wss {
        path: String,
        tls: Arc<ClientConfig>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {reason}", path.display())]
    Read {
        path: PathBuf,
        reason: rustls::pki_types::pem::Error,
    },
    #[error("{}: no {what} found (expected a PEM file with a {what})", path.display())]
    Empty { path: PathBuf, what: &'static str },
    #[error("{}: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        reason: rustls::Error,
    },
    #[error("the system has no trusted certificate authorities; set broker.ca_file")]
    NoSystemRoots,
    #[error("client certificate and key: {0}")]
    ClientAuth(rustls::Error),
    #[error("TLS set-up: {0}")]
    Setup(rustls::Error),
}

/// A TLS client configuration: trust the CAs in `ca_file` (the system's when `None`), and
/// present `client` (certificate chain file, key file) when the broker asks.
pub fn tls_config(
    ca_file: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in certificates(path, "certificate")? {
                roots.add(cert).map_err(|reason| TlsError::Invalid {
                    path: path.to_path_buf(),
                    reason,
                })?;
            }
        }
        None => {
            // Unreadable system certificates are skipped, as every TLS client does.
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError::NoSystemRoots);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certificates(cert, "certificate")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|reason| match reason {
                rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
                    path: key.to_path_buf(),
                    what: "private key",
                },
                reason => TlsError::Read {
                    path: key.to_path_buf(),
                    reason,
                },
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(TlsError::ClientAuth)?
        }
    };
    Ok(Arc::new(config))
}

fn certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |reason| TlsError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.to_path_buf(),
            what,
        });
    }
    Ok(certs)
}

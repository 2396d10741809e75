//! Opening the byte stream a connection speaks MQTT over: TCP (with TCP_NODELAY), TLS,
//! WebSocket, or WebSocket over TLS.

use std::io;

use rumqttc::tokio_rustls::{self, TlsConnector};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use ws_stream_tungstenite::WsStream;

use super::ConnError;
use crate::transport::Transport;

pub(crate) trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> ByteStream for T {}

pub(crate) type Stream = Box<dyn ByteStream>;

/// Connect to `host:port` over `transport`.
pub(crate) async fn open(
    transport: &Transport,
    host: &str,
    port: u16,
) -> Result<Stream, ConnError> {
    let tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    Ok(match transport {
        Transport::Tcp => Box::new(tcp),
        Transport::Tls(config) => Box::new(tls(config, host, tcp).await?),
        Transport::Ws { path } => {
            let url = format!("ws://{}:{port}{path}", fleetbench_scenario::url_host(host));
            Box::new(websocket(&url, tcp).await?)
        }
        Transport::Wss { path, tls: config } => {
            let url = format!("wss://{}:{port}{path}", fleetbench_scenario::url_host(host));
            let stream = tls(config, host, tcp).await?;
            Box::new(websocket(&url, stream).await?)
        }
    })
}

async fn tls(
    config: &crate::transport::TlsConfig,
    host: &str,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ConnError> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| ConnError::Tls(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(ConnError::Tls)
}

/// The WebSocket handshake, asking for the `mqtt` subprotocol (and insisting on it).
async fn websocket<S>(
    url: &str,
    stream: S,
) -> Result<WsStream<async_tungstenite::tokio::TokioAdapter<S>>, ConnError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    use async_tungstenite::tungstenite::client::IntoClientRequest;
    let ws = |e: &dyn std::fmt::Display| ConnError::WebSocket(e.to_string());
    let mut request = url.into_client_request().map_err(|e| ws(&e))?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        async_tungstenite::tungstenite::http::HeaderValue::from_static("mqtt"),
    );
    let (socket, response) = async_tungstenite::tokio::client_async(request, stream)
        .await
        .map_err(|e| ws(&e))?;
    let protocol = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok());
    if protocol.map(str::trim) != Some("mqtt") {
        return Err(ConnError::WebSocket(format!(
            "the server did not agree to the mqtt subprotocol (it answered {protocol:?})"
        )));
    }
    Ok(WsStream::new(socket))
}

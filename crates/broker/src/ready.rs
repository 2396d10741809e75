//! Readiness: a real MQTT CONNECT answered by a CONNACK, not just an open port (a rumqttd
//! listener can accept TCP and still refuse every MQTT connection).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Connect to `addr`, send an MQTT 3.1.1 CONNECT with `client_id`, a clean session and, when
/// given, a username and password; wait for a CONNACK accepting it, then close. Returns how long
/// CONNECT to CONNACK took.
///
/// The probe closes without sending DISCONNECT on purpose: rumqttd 0.20 then emits two
/// disconnect events for the connection (one for the packet, one when the socket closes), and
/// if another client has meanwhile been registered under the same (reused) connection id, the
/// second event disconnects that client. A plain close produces one event.
pub fn probe_connack(
    addr: SocketAddr,
    client_id: &str,
    credentials: Option<(&str, &str)>,
    timeout: Duration,
) -> Result<Duration, String> {
    probe_connack_as(addr, client_id, credentials, timeout, false)
}

/// [`probe_connack`] speaking MQTT 5 when `mqtt5` is set (a CONNECT of protocol level 5 with no
/// properties; the CONNACK's reason code must be success).
pub fn probe_connack_as(
    addr: SocketAddr,
    client_id: &str,
    credentials: Option<(&str, &str)>,
    timeout: Duration,
    mqtt5: bool,
) -> Result<Duration, String> {
    let start = std::time::Instant::now();
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    // Flags: clean session, plus username and password when given.
    let flags = if credentials.is_some() { 0xC2 } else { 0x02 };
    let level = if mqtt5 { 5 } else { 4 };
    let mut variable = vec![0, 4, b'M', b'Q', b'T', b'T', level, flags, 0, 30];
    if mqtt5 {
        // No properties.
        variable.push(0);
    }
    let mut fields = vec![client_id];
    if let Some((user, password)) = credentials {
        fields.extend([user, password]);
    }
    for field in fields {
        let len = u16::try_from(field.len()).map_err(|_| "CONNECT field too long".to_string())?;
        variable.extend_from_slice(&len.to_be_bytes());
        variable.extend_from_slice(field.as_bytes());
    }
    let mut packet = vec![0x10];
    encode_remaining_length(variable.len(), &mut packet);
    packet.extend_from_slice(&variable);
    stream
        .write_all(&packet)
        .map_err(|e| format!("send CONNECT: {e}"))?;
    let mut connack = [0u8; 4];
    stream
        .read_exact(&mut connack)
        .map_err(|e| format!("no CONNACK: {e}"))?;
    let elapsed = start.elapsed();
    // MQTT 5's CONNACK carries properties after the reason code: remaining length 3 or more
    // (read no further: the probe closes next).
    let plain = connack[1] == 2 || (mqtt5 && connack[1] > 2 && connack[1] < 0x80);
    if connack[0] != 0x20 || !plain {
        return Err(format!("expected CONNACK, got bytes {connack:02x?}"));
    }
    if connack[3] != 0 {
        return Err(format!(
            "CONNACK refused the connection (return code {})",
            connack[3]
        ));
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    Ok(elapsed)
}

fn encode_remaining_length(mut len: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn remaining_length_is_variable_length_encoded() {
        let mut out = Vec::new();
        super::encode_remaining_length(321, &mut out);
        assert_eq!(out, [0xC1, 0x02]);
        out.clear();
        super::encode_remaining_length(127, &mut out);
        assert_eq!(out, [0x7F]);
    }
}

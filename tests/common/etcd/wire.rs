//! How the etcd fixture talks to a member's JSON gateway (grpc-gateway on the client port):
//! one POST of a JSON body, over the tests' raw HTTP/1.1 client for plain members and through
//! `curl` with a CA and a client certificate for TLS ones; plus the encodings that gateway uses
//! (keys and values in base64, int64s as JSON strings).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::super::http::{request_bytes, send_and_read};

/// How long one request may wait for its answer: more than etcd's own request timeout (5 s
/// plus two election timeouts), so a member without a quorum answers with its error first.
const READ_FOR: Duration = Duration::from_secs(8);

/// POST `body` to a plain member on `port`.
pub fn post_plain(port: u16, path: &str, body: &Value) -> Result<Value, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let bytes = request_bytes(
        addr,
        "POST",
        path,
        None,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    let r = send_and_read(addr, &bytes, READ_FOR).map_err(|e| format!("POST {path}: {e}"))?;
    answer(path, r.status, &r.text())
}

/// POST `body` to a TLS member at `endpoint` with curl, trusting `ca` and presenting `cert`.
pub fn post_curl(
    endpoint: &str,
    path: &str,
    body: &Value,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Value, String> {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--connect-timeout", "3"])
        .args(["--max-time", &READ_FOR.as_secs().to_string()])
        .arg("--cacert")
        .arg(ca)
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args(["-H", "Content-Type: application/json"])
        .args(["--data-binary", &body.to_string()])
        .args(["--write-out", "\n%{http_code}"])
        .arg(format!("{endpoint}{path}"))
        .output()
        .map_err(|e| format!("run curl (the TLS etcd fixture needs it): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "POST {path}: curl {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let status = code
        .trim()
        .parse()
        .map_err(|_| format!("POST {path}: curl gave no status: {text:?}"))?;
    answer(path, status, body)
}

/// The JSON of a 200 answer; anything else is an error that shows it.
fn answer(path: &str, status: u16, body: &str) -> Result<Value, String> {
    if status != 200 {
        return Err(format!("POST {path}: {status} {}", body.trim()));
    }
    serde_json::from_str(body).map_err(|e| format!("POST {path}: not JSON ({e}): {body}"))
}

/// An int64 as the gateway writes it (a JSON string), or a plain JSON number.
pub fn int(v: &Value) -> Option<i64> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_i64())
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as the gateway wants bytes fields.
pub fn b64(text: &str) -> String {
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * k)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decode standard base64 (padding optional) into UTF-8 text.
pub fn unb64(text: &str) -> Result<String, String> {
    let mut bytes = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.trim_end_matches('=').bytes() {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c)
            .ok_or_else(|| format!("not base64: {text:?}"))?;
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    String::from_utf8(bytes).map_err(|e| format!("not UTF-8 after base64: {e}"))
}

//! HTTP_GET and SSL_GET: fetch each `url`, check its status code against
//! `status_code` and, with `digest`, the MD5 of its body.
//!
//! The request is keepalived's: `GET path HTTP/1.x` with `User-Agent:
//! KeepAliveClient` and `Host:` (the URL's `virtualhost`, else the
//! checker's/server's/service's, else the address, with the port when it
//! is not the scheme's default); `Connection: close` for `1.0C` and `1.1`.
//! The response is parsed with `httparse`; the body is read up to
//! Content-Length, through chunked framing (HTTP/1.1), or to EOF, and at
//! most [`MAX_BODY`] bytes. Without a `digest` the attempt ends once the
//! status line and headers are in (the body cannot change the verdict).
//!
//! SSL_GET does not verify the server's certificate (keepalived does not
//! by default) but completes the handshake, checking that the server
//! holds the key of the certificate it sent. SNI is sent only with
//! `enable_sni`, and then carries the virtual host.

use std::net::IpAddr;
use std::sync::Arc;

use md5::{Digest, Md5};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{connect_tcp, io_reason, timeout_reason, Outcome, UrlScope};
use crate::health::spec::{CheckTarget, HttpCheck, HttpProtocol, UrlCheck};

/// The most of a body read for a digest.
pub const MAX_BODY: usize = 4 << 20;
/// The most of a status line and headers accepted.
const MAX_HEAD: usize = 64 << 10;

pub async fn check(
    target: &CheckTarget,
    http: &HttpCheck,
    scope: UrlScope,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Outcome {
    if http.urls.is_empty() {
        return Err("no url configured".into());
    }
    let urls: &[UrlCheck] = match scope {
        UrlScope::All => &http.urls,
        UrlScope::One(i) => match http.urls.get(i..=i) {
            Some(u) => u,
            None => return Err("no such url".into()),
        },
    };
    for url in urls {
        // connect_timeout bounds each URL's fetch, as in keepalived.
        let limit = target.timing.connect_timeout;
        match tokio::time::timeout(limit, fetch(target, http, url, tls)).await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(reason),
            Err(_) => return Err(timeout_reason(limit)),
        }
    }
    Ok(None)
}

async fn fetch(
    target: &CheckTarget,
    http: &HttpCheck,
    url: &UrlCheck,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<(), String> {
    let vhost = url.virtualhost.as_deref().or(target.virtualhost.as_deref());
    let request = build_request(
        http.protocol,
        &url.path,
        vhost,
        target.addr,
        target.port,
        tls.is_some(),
    );
    let stream = connect_tcp(target).await?;
    match tls {
        None => exchange(stream, &request, url, http.protocol).await,
        Some(config) => {
            let name = match (http.enable_sni, vhost) {
                (true, Some(host)) => ServerName::try_from(host.to_string())
                    .map_err(|_| format!("bad virtualhost for sni: {host}"))?,
                // An IP address as the server name sends no SNI.
                _ => ServerName::IpAddress(target.addr.into()),
            };
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            let stream = connector
                .connect(name, stream)
                .await
                .map_err(|e| format!("tls handshake: {}", tls_reason(&e)))?;
            exchange(stream, &request, url, http.protocol).await
        }
    }
}

fn tls_reason(e: &std::io::Error) -> String {
    match e.get_ref() {
        Some(inner) => inner.to_string(),
        None => io_reason(e),
    }
}

/// keepalived's request for `path`.
pub fn build_request(
    protocol: HttpProtocol,
    path: &str,
    vhost: Option<&str>,
    addr: IpAddr,
    port: u16,
    tls: bool,
) -> String {
    let default_port = if tls { 443 } else { 80 };
    let host = match vhost {
        Some(h) => h.to_string(),
        None => match addr {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        },
    };
    let host_port = if port == default_port {
        host
    } else {
        format!("{host}:{port}")
    };
    let (version, close) = match protocol {
        HttpProtocol::V10 => ("1.0", ""),
        HttpProtocol::V10Close => ("1.0", "Connection: close\r\n"),
        HttpProtocol::V11 => ("1.1", "Connection: close\r\n"),
    };
    format!(
        "GET {path} HTTP/{version}\r\nUser-Agent: KeepAliveClient\r\n{close}Host: {host_port}\r\n\r\n"
    )
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &str,
    url: &UrlCheck,
    protocol: HttpProtocol,
) -> Result<(), String> {
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| io_reason(&e))?;
    stream.flush().await.map_err(|e| io_reason(&e))?;
    let mut buf = Vec::with_capacity(4096);
    let (head_len, status, framing) = loop {
        let n = read_more(&mut stream, &mut buf).await?;
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let code = resp.code.unwrap_or(0);
                break (len, code, framing_of(resp.headers, protocol)?);
            }
            Ok(httparse::Status::Partial) => {
                if n == 0 {
                    return Err(if buf.is_empty() {
                        "empty response".into()
                    } else {
                        "truncated response header".into()
                    });
                }
                if buf.len() > MAX_HEAD {
                    return Err("response header too large".into());
                }
            }
            Err(e) => return Err(format!("bad http response: {e}")),
        }
    };
    if !url.status_ok(status) {
        return Err(format!("status {status}"));
    }
    let Some(want) = url.digest else {
        return Ok(());
    };
    let mut rest = buf.split_off(head_len);
    let body = read_body(&mut stream, &mut rest, framing).await?;
    let got: [u8; 16] = Md5::digest(&body).into();
    if got != want {
        return Err("digest mismatch".into());
    }
    Ok(())
}

/// How the body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilEof,
}

fn framing_of(headers: &[httparse::Header], protocol: HttpProtocol) -> Result<Framing, String> {
    let mut framing = Framing::UntilEof;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") && protocol == HttpProtocol::V11 {
            let v = String::from_utf8_lossy(h.value);
            if v.trim().to_ascii_lowercase().ends_with("chunked") {
                return Ok(Framing::Chunked);
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or("bad content-length")?;
            framing = Framing::Length(v);
        }
    }
    Ok(framing)
}

/// Read what the stream has into `buf`; 0 at EOF.
async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<usize, String> {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        // A TLS peer that closes without close_notify still ended the body.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
        Err(e) => Err(io_reason(&e)),
    }
}

async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    framing: Framing,
) -> Result<Vec<u8>, String> {
    match framing {
        Framing::Length(len) => {
            if len > MAX_BODY {
                return Err(format!("body over {} bytes", MAX_BODY));
            }
            while buf.len() < len {
                if read_more(stream, buf).await? == 0 {
                    return Err("body shorter than content-length".into());
                }
            }
            buf.truncate(len);
            Ok(std::mem::take(buf))
        }
        Framing::UntilEof => {
            while read_more(stream, buf).await? != 0 {
                if buf.len() > MAX_BODY {
                    return Err(format!("body over {} bytes", MAX_BODY));
                }
            }
            Ok(std::mem::take(buf))
        }
        Framing::Chunked => {
            let mut body = Vec::new();
            loop {
                match dechunk(buf, &mut body)? {
                    Dechunk::Done => return Ok(body),
                    Dechunk::NeedMore => {
                        if body.len() > MAX_BODY {
                            return Err(format!("body over {} bytes", MAX_BODY));
                        }
                        if read_more(stream, buf).await? == 0 {
                            return Err("truncated chunked body".into());
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Dechunk {
    Done,
    NeedMore,
}

/// Move every complete chunk at the front of `buf` into `body`.
fn dechunk(buf: &mut Vec<u8>, body: &mut Vec<u8>) -> Result<Dechunk, String> {
    loop {
        let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
            if buf.len() > 1024 {
                return Err("bad chunk size line".into());
            }
            return Ok(Dechunk::NeedMore);
        };
        let line = std::str::from_utf8(&buf[..eol]).map_err(|_| "bad chunk size line")?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| "bad chunk size line")?;
        if size > MAX_BODY {
            return Err(format!("body over {} bytes", MAX_BODY));
        }
        if size == 0 {
            // Trailers are not needed for the digest.
            return Ok(Dechunk::Done);
        }
        let start = eol + 2;
        if buf.len() < start + size + 2 {
            return Ok(Dechunk::NeedMore);
        }
        if &buf[start + size..start + size + 2] != b"\r\n" {
            return Err("bad chunk framing".into());
        }
        body.extend_from_slice(&buf[start..start + size]);
        buf.drain(..start + size + 2);
    }
}

/// keepalived does not verify the server certificate; the handshake still
/// checks the server's signature with the key of the certificate it sent.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS client configuration every SSL_GET shares.
pub fn insecure_tls_config() -> Arc<rustls::ClientConfig> {
    // ring has no post-quantum key exchange (hence the deprecation); a
    // health check does not need one, and aws-lc-rs would need cmake.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
                .with_no_client_auth()
        });
    match config {
        Ok(c) => Arc::new(c),
        // ring supports the default versions; this cannot fail with it.
        Err(e) => panic!("rustls ring provider lacks default protocol versions: {e}"),
    }
}

/// keepalived prints digests as 32 lowercase hex digits.
pub fn digest_hex(d: &[u8; 16]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_keepalived_s() {
        let a: IpAddr = "198.18.0.2".parse().unwrap();
        assert_eq!(
            build_request(HttpProtocol::V10, "/", None, a, 80, false),
            "GET / HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: 198.18.0.2\r\n\r\n"
        );
        assert_eq!(
            build_request(HttpProtocol::V11, "/h", Some("www.example"), a, 8080, false),
            "GET /h HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\nHost: www.example:8080\r\n\r\n"
        );
        let a6: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(
            build_request(HttpProtocol::V10Close, "/", None, a6, 443, true)
                .contains("Connection: close\r\nHost: [2001:db8::1]\r\n")
        );
    }

    #[test]
    fn chunked_bodies_are_decoded_across_reads() {
        let mut body = Vec::new();
        let mut buf = b"5\r\nhel".to_vec();
        assert_eq!(dechunk(&mut buf, &mut body), Ok(Dechunk::NeedMore));
        buf.extend_from_slice(b"lo\r\n6;ext=1\r\n world\r\n0\r\n\r\n");
        assert_eq!(dechunk(&mut buf, &mut body), Ok(Dechunk::Done));
        assert_eq!(body, b"hello world");
        let mut bad = b"zz\r\n".to_vec();
        assert!(dechunk(&mut bad, &mut Vec::new()).is_err());
    }
}

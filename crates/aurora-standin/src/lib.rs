//! `chief-aurora-standin`: a dev-only stand-in for the one Aurora MySQL statement MariaDB
//! lacks, `LOAD DATA FROM S3`. Not Aurora.
//!
//! It is a thin MySQL-protocol proxy in front of a MariaDB server. Every packet passes
//! through unchanged (the handshake too, with the server's TLS capability cleared so the
//! session stays readable), except a `COM_QUERY` whose text is `LOAD DATA FROM S3 …`
//! ([`statement`]): for it the proxy reads the object, the prefix or the MANIFEST from S3
//! as Aurora documents it, honours each entry's `mandatory`, downloads the files into the
//! server's `secure_file_priv` directory (one file, in manifest order, so rows are
//! numbered across the files as Aurora numbers them), and sends the server
//! `LOAD DATA INFILE '<that file>' <the statement's own clauses>` instead, **on the
//! caller's connection, in the caller's transaction**. A missing mandatory file (or no
//! file at all, or an unreadable manifest) answers the client with an error packet and
//! sends the server nothing, so the transaction is untouched.
//!
//! Why a proxy and not a second code path in the loader: the loader runs exactly its
//! production code (`--mode aurora`: the MANIFEST it writes, the statement text it sends,
//! the warnings it reads back), and the statement is interpreted by code that never saw
//! the loader's — a parser of the documented syntax.
//!
//! Fault injection for tests: `delete_before_load` deletes, from S3, the listed objects
//! whose key contains a string just before they are read, as a lifecycle rule or a
//! concurrent delete would (the object is really gone).

pub mod statement;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use statement::{LoadFromS3, Manifest, Source};

/// How the stand-in runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The MariaDB server, `host:port`.
    pub upstream: String,
    /// The server's `secure_file_priv` directory, as an absolute path both the stand-in
    /// and the server reach.
    pub import_dir: PathBuf,
    /// Fault injection: objects whose key contains this are deleted from S3 just before
    /// they are read.
    pub delete_before_load: Option<String>,
}

/// `CLIENT_SSL` in the handshake's capability flags.
const CLIENT_SSL: u16 = 0x0800;
/// `COM_QUERY`.
const COM_QUERY: u8 = 0x03;
/// Largest payload of one packet.
const MAX_PAYLOAD: usize = 0xFF_FFFF;

/// Counts the statements run, for the file names.
static LOADS: AtomicU64 = AtomicU64::new(0);

/// Serves connections from `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, s3: aws_sdk_s3::Client, options: Options) {
    let shared = Arc::new((s3, options));
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            if let Err(e) = connection(client, &shared.0, &shared.1).await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}

/// One packet: (sequence id, payload), or `None` at the end of the stream.
async fn read_packet<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 4];
    match r.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some((header[3], payload)))
}

fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len().min(MAX_PAYLOAD);
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&[
        (len & 0xFF) as u8,
        (len >> 8 & 0xFF) as u8,
        (len >> 16 & 0xFF) as u8,
        seq,
    ]);
    out.extend_from_slice(payload);
    out
}

/// An ERR packet (`0xFF`, code, `#`, SQLSTATE, message).
fn error_packet(seq: u8, code: u16, sqlstate: &str, message: &str) -> Vec<u8> {
    let mut payload = vec![0xFF];
    payload.extend_from_slice(&code.to_le_bytes());
    payload.push(b'#');
    payload.extend_from_slice(sqlstate.as_bytes());
    payload.extend_from_slice(message.as_bytes());
    frame(seq, &payload)
}

/// Clears `CLIENT_SSL` in a protocol-10 greeting, in place.
fn clear_ssl(greeting: &mut [u8]) {
    if greeting.first() != Some(&10) {
        return;
    }
    let Some(nul) = greeting[1..].iter().position(|b| *b == 0) else {
        return;
    };
    // version\0, thread id (4), auth data part 1 (8), filler (1), capabilities (2).
    let at = 1 + nul + 1 + 4 + 8 + 1;
    if let Some(bytes) = greeting.get_mut(at..at + 2) {
        let flags = u16::from_le_bytes([bytes[0], bytes[1]]) & !CLIENT_SSL;
        bytes.copy_from_slice(&flags.to_le_bytes());
    }
}

async fn connection(
    client: TcpStream,
    s3: &aws_sdk_s3::Client,
    options: &Options,
) -> anyhow::Result<()> {
    let server = TcpStream::connect(&options.upstream).await?;
    let (mut client_r, mut client_w) = client.into_split();
    let (mut server_r, mut server_w) = server.into_split();

    // Handshake: greeting, then the client's response and any auth round trips, until the
    // server answers OK or ERR.
    let Some((seq, mut greeting)) = read_packet(&mut server_r).await? else {
        return Ok(());
    };
    clear_ssl(&mut greeting);
    client_w.write_all(&frame(seq, &greeting)).await?;
    'handshake: loop {
        let Some((seq, packet)) = read_packet(&mut client_r).await? else {
            return Ok(());
        };
        server_w.write_all(&frame(seq, &packet)).await?;
        loop {
            let Some((seq, reply)) = read_packet(&mut server_r).await? else {
                return Ok(());
            };
            client_w.write_all(&frame(seq, &reply)).await?;
            match reply.as_slice() {
                [0x00, ..] | [0xFF, ..] => break 'handshake,
                // caching_sha2_password "fast auth success": the OK follows.
                [0x01, 0x03] => continue,
                _ => break,
            }
        }
    }

    // Commands: server → client as bytes; client → server packet by packet.
    let client_w = Arc::new(Mutex::new(client_w));
    let relay_w = Arc::clone(&client_w);
    let relay = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if relay_w.lock().await.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let mut staged: Vec<PathBuf> = Vec::new();
    let result = async {
        while let Some((seq, packet)) = read_packet(&mut client_r).await? {
            // The server has answered the statement that used them by now.
            for path in staged.drain(..) {
                let _ = tokio::fs::remove_file(&path).await;
            }
            let sql =
                (seq == 0 && packet.first() == Some(&COM_QUERY) && packet.len() < MAX_PAYLOAD)
                    .then(|| std::str::from_utf8(&packet[1..]).ok())
                    .flatten()
                    .filter(|sql| statement::is_load_from_s3(sql));
            let Some(sql) = sql else {
                server_w.write_all(&frame(seq, &packet)).await?;
                continue;
            };
            match stage(sql, s3, options).await {
                Ok((rewritten, path)) => {
                    staged.push(path);
                    let mut query = vec![COM_QUERY];
                    query.extend_from_slice(rewritten.as_bytes());
                    server_w.write_all(&frame(0, &query)).await?;
                }
                Err(message) => {
                    tracing::warn!(error = %message, "LOAD DATA FROM S3 refused");
                    client_w
                        .lock()
                        .await
                        .write_all(&error_packet(1, ER_LOAD_FROM_S3, "HY000", &message))
                        .await?;
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    for path in staged {
        let _ = tokio::fs::remove_file(&path).await;
    }
    let _ = server_w.shutdown().await;
    relay.abort();
    result
}

/// The error code the stand-in answers a refused `LOAD DATA FROM S3` with: MySQL's
/// `ER_UNKNOWN_ERROR` (the stand-in does not claim Aurora's own codes).
pub const ER_LOAD_FROM_S3: u16 = 1105;

fn s3_text<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: &aws_sdk_s3::error::SdkError<E>,
) -> String {
    match e.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("error"),
            service.message().unwrap_or("")
        ),
        None => DisplayErrorContext(e).to_string(),
    }
}

/// Reads what the statement names from S3 into one file in the import directory; the
/// `LOAD DATA INFILE` statement to send instead, and the file.
async fn stage(
    sql: &str,
    s3: &aws_sdk_s3::Client,
    options: &Options,
) -> Result<(String, PathBuf), String> {
    let load: LoadFromS3 = statement::parse(sql).map_err(|e| format!("syntax: {e}"))?;
    let bucket = load.uri.bucket.clone();
    // (bucket, key, mandatory) in load order.
    let entries: Vec<(String, String, bool)> = match load.source {
        Source::File => vec![(bucket, load.uri.key.clone(), true)],
        Source::Prefix => {
            let mut keys = Vec::new();
            let mut pages = s3
                .list_objects_v2()
                .bucket(&bucket)
                .prefix(&load.uri.key)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    format!(
                        "S3 ListObjectsV2 s3://{bucket}/{}: {}",
                        load.uri.key,
                        s3_text(&e)
                    )
                })?;
                keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_owned)),
                );
            }
            keys.into_iter()
                .map(|k| (bucket.clone(), k, false))
                .collect()
        }
        Source::Manifest => {
            let body = get(s3, &bucket, &load.uri.key).await?.ok_or_else(|| {
                format!("the manifest s3://{bucket}/{} does not exist", load.uri.key)
            })?;
            let manifest: Manifest = serde_json::from_slice(&body).map_err(|e| {
                format!(
                    "the manifest s3://{bucket}/{} is not valid: {e}",
                    load.uri.key
                )
            })?;
            let mut out = Vec::with_capacity(manifest.entries.len());
            for entry in manifest.entries {
                let uri = statement::parse_uri(&entry.url).map_err(|e| e.to_string())?;
                out.push((uri.bucket, uri.key, entry.mandatory));
            }
            out
        }
    };
    let mut data = Vec::new();
    let mut files = 0usize;
    for (bucket, key, mandatory) in &entries {
        if let Some(fault) = &options.delete_before_load
            && key.contains(fault.as_str())
        {
            tracing::warn!(
                bucket,
                key,
                "fault injection: deleting the object before the load"
            );
            s3.delete_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "fault injection: DeleteObject s3://{bucket}/{key}: {}",
                        s3_text(&e)
                    )
                })?;
        }
        match get(s3, bucket, key).await? {
            Some(body) => {
                files += 1;
                data.extend_from_slice(&body);
                // Each file's last line ends where the file ends.
                if !body.is_empty() && !body.ends_with(b"\n") {
                    data.push(b'\n');
                }
            }
            None if *mandatory => {
                return Err(format!(
                    "S3 file s3://{bucket}/{key} is mandatory and does not exist; nothing loaded"
                ));
            }
            None => tracing::info!(bucket, key, "optional file missing; skipped"),
        }
    }
    if files == 0 {
        return Err(format!(
            "no file found for LOAD DATA FROM S3 '{}'",
            load.uri.key
        ));
    }
    let n = LOADS.fetch_add(1, Ordering::Relaxed);
    let path = options.import_dir.join(format!(
        "chief-aurora-standin-{}-{n}.txt",
        std::process::id()
    ));
    tokio::fs::write(&path, &data)
        .await
        .map_err(|e| format!("staging {}: {e}", path.display()))?;
    tracing::info!(
        source = ?load.source,
        uri = %format!("s3://{}/{}", load.uri.bucket, load.uri.key),
        files,
        bytes = data.len(),
        "LOAD DATA FROM S3 run as LOAD DATA INFILE"
    );
    let rewritten = format!(
        "LOAD DATA INFILE {} {}",
        statement::quote(&path.to_string_lossy()),
        load.rest
    );
    Ok((rewritten, path))
}

/// The object's bytes, or `None` when it does not exist.
async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => out
            .body
            .collect()
            .await
            .map(|b| Some(b.to_vec()))
            .map_err(|e| format!("S3 GetObject s3://{bucket}/{key}: {e}")),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
        Err(e) => Err(format!("S3 GetObject s3://{bucket}/{key}: {}", s3_text(&e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_is_cleared_from_the_greeting_only() {
        let mut g = vec![10];
        g.extend_from_slice(b"10.11.6-MariaDB\0");
        g.extend_from_slice(&[1, 0, 0, 0]);
        g.extend_from_slice(&[0; 8]);
        g.push(0);
        g.extend_from_slice(&(0xF7FF_u16 | CLIENT_SSL).to_le_bytes());
        g.extend_from_slice(&[8, 2, 0]);
        let at = g.len() - 5;
        clear_ssl(&mut g);
        assert_eq!(u16::from_le_bytes([g[at], g[at + 1]]), 0xF7FF & !CLIENT_SSL);
        assert_eq!(&g[g.len() - 3..], &[8, 2, 0]);
    }

    #[test]
    fn frames_and_errors_have_the_wire_layout() {
        assert_eq!(frame(3, b"ab"), vec![2, 0, 0, 3, b'a', b'b']);
        let e = error_packet(1, 1105, "HY000", "x");
        assert_eq!(
            e,
            vec![
                10, 0, 0, 1, 0xFF, 0x51, 0x04, b'#', b'H', b'Y', b'0', b'0', b'0', b'x'
            ]
        );
    }
}

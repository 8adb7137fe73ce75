//! `add` of a directory: the directory walk and the multipart body.

use super::transport::{KuboError, Rpc};
use futures::TryStreamExt;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Uploads `dir` (recursively) without pinning it, within `limit`; returns the directory's CID.
/// See [`KuboClient::add_dir`](super::KuboClient::add_dir).
pub(super) async fn add_dir(rpc: &Rpc, dir: &Path, limit: Duration) -> Result<String, KuboError> {
    let dir = dir.to_path_buf();
    let (root_name, entries) = tokio::task::spawn_blocking(move || walk_dir(&dir))
        .await
        .map_err(|e| KuboError::Other(format!("directory walk failed: {e}")))??;

    let mut form = Form::new().percent_encode_noop();
    for entry in entries {
        let name = encode_filename(&entry.rel);
        let part = match entry.source {
            None => Part::bytes(Vec::new()).mime_str("application/x-directory"),
            Some(path) => Part::stream_with_length(lazy_file_body(path), entry.len)
                .mime_str("application/octet-stream"),
        }
        .map_err(|e| KuboError::Other(format!("multipart: {e}")))?
        .file_name(name);
        form = form.part("file", part);
    }

    let args = [
        ("cid-version", "1"),
        ("raw-leaves", "true"),
        ("pin", "false"),
        ("wrap-with-directory", "false"),
        ("progress", "false"),
        ("cid-base", "base32"),
    ];
    let request = rpc.post("add", &args).multipart(form);
    let lines = rpc.call_lines(request, limit).await?;
    root_of_add(&lines, &root_name)
}

/// One multipart entry: a directory (`source: None`) or a file streamed from `source`.
#[derive(Debug)]
struct AddEntry {
    /// Path relative to the directory's parent, `/`-separated, starting with the root's name.
    rel: String,
    source: Option<PathBuf>,
    len: u64,
}

/// The directory's name and its entries, each directory before its contents (Kubo's multipart
/// reader and js-ipfs both build the tree from this order).
fn walk_dir(dir: &Path) -> Result<(String, Vec<AddEntry>), KuboError> {
    let io = |what: &str, path: &Path, e: std::io::Error| {
        KuboError::Other(format!("{what} {}: {e}", path.display()))
    };
    let dir = dir.canonicalize().map_err(|e| io("cannot read", dir, e))?;
    if !dir.is_dir() {
        return Err(KuboError::Other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let root_name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            KuboError::Other(format!(
                "{}: the directory needs a UTF-8 name",
                dir.display()
            ))
        })?
        .to_string();
    let mut entries = vec![AddEntry {
        rel: root_name.clone(),
        source: None,
        len: 0,
    }];
    fn visit(
        dir: &Path,
        rel: &str,
        entries: &mut Vec<AddEntry>,
        io: &dyn Fn(&str, &Path, std::io::Error) -> KuboError,
    ) -> Result<(), KuboError> {
        let mut children: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| io("cannot list", dir, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| io("cannot list", dir, e))?;
        children.sort_by_key(|c| c.file_name());
        for child in children {
            let path = child.path();
            let name = child.file_name();
            let name = name.to_str().ok_or_else(|| {
                KuboError::Other(format!("{}: file names must be UTF-8", path.display()))
            })?;
            let child_rel = format!("{rel}/{name}");
            // `symlink_metadata`: a symlink is refused, never followed (no loops, no escapes).
            let meta = std::fs::symlink_metadata(&path).map_err(|e| io("cannot stat", &path, e))?;
            if meta.is_dir() {
                entries.push(AddEntry {
                    rel: child_rel.clone(),
                    source: None,
                    len: 0,
                });
                visit(&path, &child_rel, entries, io)?;
            } else if meta.is_file() {
                entries.push(AddEntry {
                    rel: child_rel,
                    source: Some(path),
                    len: meta.len(),
                });
            } else {
                return Err(KuboError::Other(format!(
                    "{}: only regular files and directories can be added",
                    path.display()
                )));
            }
        }
        Ok(())
    }
    visit(&dir, &root_name, &mut entries, &io)?;
    Ok((root_name, entries))
}

/// A file's content, opened only when the upload reaches it (a directory of thousands of
/// segments must not hold thousands of descriptors).
fn lazy_file_body(path: PathBuf) -> reqwest::Body {
    let stream = futures::stream::once(async move {
        tokio::fs::File::open(&path)
            .await
            .map(tokio_util::io::ReaderStream::new)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    })
    .try_flatten();
    reqwest::Body::wrap_stream(stream)
}

/// Percent-encodes a multipart file name: everything but unreserved characters, so `/` becomes
/// `%2F` and `+` becomes `%2B` (Kubo decodes with `url.QueryUnescape`, js-ipfs with
/// `decodeURIComponent`; both agree on this form).
fn encode_filename(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The directory's CID in `add`'s output: the line whose `Name` is the directory's own name.
fn root_of_add(lines: &[Value], root_name: &str) -> Result<String, KuboError> {
    lines
        .iter()
        .find(|l| l.get("Name").and_then(Value::as_str) == Some(root_name))
        .and_then(|l| l.get("Hash").and_then(Value::as_str))
        .map(str::to_string)
        .ok_or_else(|| {
            KuboError::Garbage(format!(
                "add: no entry named {root_name:?} among {} lines",
                lines.len()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubo::tests::V1;

    #[test]
    fn add_output() {
        let add: Vec<Value> = [
            r#"{"Name":"hls/index.m3u8","Hash":"bafkreiauizm3jdzufublskmja6vtf7hqi6nmtsm2buuty7box6g7ge65ci","Size":8}"#,
            &format!(r#"{{"Name":"hls","Hash":"{V1}","Size":900491,"Mode":"0755"}}"#),
        ]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        assert_eq!(root_of_add(&add, "hls").unwrap(), V1);
        assert!(root_of_add(&add, "other").is_err());
    }

    #[test]
    fn filenames_are_fully_percent_encoded() {
        assert_eq!(encode_filename("hls/seg 1+2.ts"), "hls%2Fseg%201%2B2.ts");
        assert_eq!(encode_filename("é"), "%C3%A9");
    }
}

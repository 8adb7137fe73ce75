//! Streamed replies (`add`, `refs`, `repo/gc`, `pin/add`): newline-delimited JSON, read as it
//! arrives. A failure after the `200` can only be reported inside the stream: as a
//! `{"Type":"error"}` line, or in the `X-Stream-Error` header or trailer (Kubo sends the trailer
//! when a stream fails half-way).

use super::transport::{KuboError, classify};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use reqwest::Response;
use serde_json::Value;
use std::collections::VecDeque;

/// What a streamed reply yields next.
#[derive(Debug, PartialEq)]
pub(super) enum Chunk {
    /// One line, without its `\n`, never blank.
    Line(Bytes),
    /// An `X-Stream-Error` trailer: the node gave up after the lines so far.
    StreamError(String),
}

/// A reply's body, read line by line.
pub(super) struct Lines {
    body: reqwest::Body,
    buffer: LineBuffer,
    ready: VecDeque<Bytes>,
    ended: bool,
}

impl Lines {
    /// Reads `response`'s body. Check [`stream_error_header`] on its headers first.
    pub(super) fn new(response: Response) -> Self {
        Lines {
            body: http::Response::from(response).into_body(),
            buffer: LineBuffer::default(),
            ready: VecDeque::new(),
            ended: false,
        }
    }

    /// The next line or stream error; `None` once the body has ended. The last line needs no
    /// trailing `\n`. Cancel-safe: a line already read is kept for the next call.
    pub(super) async fn next(&mut self) -> Option<Result<Chunk, KuboError>> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                return Some(Ok(Chunk::Line(line)));
            }
            if self.ended {
                return None;
            }
            match self.body.frame().await {
                None => {
                    self.ended = true;
                    return self.buffer.finish().map(|line| Ok(Chunk::Line(line)));
                }
                Some(Err(e)) => return Some(Err(classify(&e))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.ready.extend(self.buffer.push(&data)),
                    Err(frame) => {
                        if let Some(err) = frame.trailers_ref().and_then(stream_error_header) {
                            return Some(Ok(Chunk::StreamError(err)));
                        }
                    }
                },
            }
        }
    }

    /// What arrived after the last `\n`, for a reader that stops before the end.
    pub(super) fn partial(&mut self) -> Option<Bytes> {
        self.buffer.finish()
    }
}

/// Splits a byte stream into lines (without the `\n`; blank lines dropped).
#[derive(Debug, Default)]
struct LineBuffer {
    partial: BytesMut,
}

impl LineBuffer {
    fn push(&mut self, data: &[u8]) -> Vec<Bytes> {
        self.partial.extend_from_slice(data);
        let mut lines = Vec::new();
        while let Some(pos) = self.partial.iter().position(|&b| b == b'\n') {
            let line = self.partial.split_to(pos + 1).freeze();
            let line = line.slice(..pos);
            if !line.trim_ascii().is_empty() {
                lines.push(line);
            }
        }
        lines
    }

    /// The last line, if the stream did not end with a newline.
    fn finish(&mut self) -> Option<Bytes> {
        let rest = std::mem::take(&mut self.partial).freeze();
        (!rest.trim_ascii().is_empty()).then_some(rest)
    }
}

/// `{"Message": "...", "Type": "error"}` (the Kubo/js-ipfs error shape) → the message.
pub(super) fn error_message(value: &Value) -> Option<String> {
    if value.get("Type").and_then(Value::as_str) != Some("error") {
        return None;
    }
    Some(
        value
            .get("Message")
            .and_then(Value::as_str)
            .unwrap_or("error without a message")
            .to_string(),
    )
}

/// The `X-Stream-Error` header or trailer, with the `Message` extracted when it is JSON.
pub(super) fn stream_error_header(headers: &http::HeaderMap) -> Option<String> {
    let raw = headers.get("x-stream-error")?;
    let text = String::from_utf8_lossy(raw.as_bytes()).trim().to_string();
    if text.is_empty() {
        return None;
    }
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("Message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or(text);
    Some(format!("stream error: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_buffer_splits_across_chunks() {
        let mut b = LineBuffer::default();
        assert!(b.push(b"{\"Progress\":").is_empty());
        let lines = b.push(b"1}\n\n{\"Progress\":2}\n{\"Pi");
        assert_eq!(
            lines,
            vec![
                Bytes::from_static(b"{\"Progress\":1}"),
                Bytes::from_static(b"{\"Progress\":2}")
            ]
        );
        assert!(b.push(b"ns\":[]}").is_empty());
        assert_eq!(b.finish(), Some(Bytes::from_static(b"{\"Pins\":[]}")));
        assert_eq!(b.finish(), None);
    }

    #[test]
    fn stream_error_trailer() {
        let mut h = http::HeaderMap::new();
        assert_eq!(stream_error_header(&h), None);
        h.insert(
            "X-Stream-Error",
            r#"{"Message":"merkledag: not found","Code":0}"#.parse().unwrap(),
        );
        assert_eq!(
            stream_error_header(&h).unwrap(),
            "stream error: merkledag: not found"
        );
        h.insert("X-Stream-Error", "plain text".parse().unwrap());
        assert_eq!(stream_error_header(&h).unwrap(), "stream error: plain text");
    }

    #[test]
    fn error_lines() {
        let line = serde_json::json!({"Message": "context canceled", "Code": 0, "Type": "error"});
        assert_eq!(error_message(&line).as_deref(), Some("context canceled"));
        assert_eq!(error_message(&serde_json::json!({"Message": "m"})), None);
    }
}

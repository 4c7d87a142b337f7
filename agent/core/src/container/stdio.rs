//! Bounded buffering of a process' output.
//!
//! Back-pressure rule: one pump task per stream copies from the pipe (or pty) into a buffer
//! of at most [`STREAM_BUFFER_BYTES`]. When the buffer is full the pump stops reading, the
//! kernel pipe buffer (64 KiB) fills, and the writing process blocks in `write(2)` until the
//! host drains the stream with ReadStdout/ReadStderr. So a container writing gigabytes costs
//! the agent at most `STREAM_BUFFER_BYTES + PUMP_CHUNK` bytes per stream.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;
use tokio::sync::Notify;

use crate::host::BoxReader;

/// Most bytes buffered per stream before the pump stops reading.
pub const STREAM_BUFFER_BYTES: usize = 256 * 1024;
/// Bytes read from the pipe at a time.
const PUMP_CHUNK: usize = 32 * 1024;
/// Largest ReadStdout/ReadStderr answer (ttRPC frames must stay below 4 MiB).
pub const MAX_READ_BYTES: usize = 1024 * 1024;

#[derive(Default)]
struct Inner {
    buf: VecDeque<u8>,
    eof: bool,
}

/// A process stream's buffered output.
pub(crate) struct StreamBuffer {
    inner: Mutex<Inner>,
    data: Notify,
    space: Notify,
    readers: tokio::sync::Mutex<()>,
    cap: usize,
}

impl StreamBuffer {
    /// Starts pumping `reader` into a new buffer of at most `cap` bytes.
    pub(crate) fn spawn(reader: BoxReader, cap: usize) -> Arc<StreamBuffer> {
        let sb = Arc::new(StreamBuffer {
            inner: Mutex::new(Inner::default()),
            data: Notify::new(),
            space: Notify::new(),
            readers: tokio::sync::Mutex::new(()),
            cap: cap.max(1),
        });
        tokio::spawn(pump(reader, sb.clone()));
        sb
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes currently buffered.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.lock().buf.len()
    }

    /// Waits for output and returns up to `max` bytes; `None` once the stream ended and
    /// everything was read.
    pub(crate) async fn read(&self, max: usize) -> Option<Vec<u8>> {
        let _one_reader = self.readers.lock().await;
        loop {
            {
                let mut inner = self.lock();
                if !inner.buf.is_empty() {
                    let n = max.min(inner.buf.len());
                    let out: Vec<u8> = inner.buf.drain(..n).collect();
                    if inner.buf.is_empty() {
                        inner.buf.shrink_to(PUMP_CHUNK);
                    }
                    drop(inner);
                    self.space.notify_one();
                    return Some(out);
                }
                if inner.eof {
                    inner.buf.shrink_to_fit();
                    return None;
                }
            }
            self.data.notified().await;
        }
    }

    /// True once the stream ended and was read to the end.
    pub(crate) fn drained(&self) -> bool {
        let inner = self.lock();
        inner.eof && inner.buf.is_empty()
    }
}

async fn pump(mut reader: BoxReader, sb: Arc<StreamBuffer>) {
    let mut chunk = vec![0u8; PUMP_CHUNK];
    loop {
        let room = loop {
            let room = sb.cap.saturating_sub(sb.lock().buf.len());
            if room > 0 {
                break room;
            }
            // Full: stop reading so the writer blocks on the pipe (notify_one keeps a permit,
            // so a read that happened between the check and here is not missed).
            sb.space.notified().await;
        };
        let want = room.min(chunk.len());
        let n = match reader.read(&mut chunk[..want]).await {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        let mut inner = sb.lock();
        if n == 0 {
            inner.eof = true;
            drop(inner);
            sb.data.notify_one();
            return;
        }
        inner.buf.extend(&chunk[..n]);
        drop(inner);
        sb.data.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn writer_blocks_when_buffer_is_full_and_every_byte_arrives() {
        let (mut w, r) = tokio::io::duplex(4096);
        let sb = StreamBuffer::spawn(Box::new(r), 64 * 1024);
        let total = 1024 * 1024usize;
        let data: Vec<u8> = (0..total).map(|i| (i * 7 % 251) as u8).collect();
        let expect = data.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&data).await.unwrap();
        });
        // Nobody reads: the writer must stall with at most cap + pipe bytes in flight.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!writer.is_finished(), "writer should be blocked");
        assert!(sb.buffered() <= 64 * 1024, "buffered {}", sb.buffered());
        assert!(sb.buffered() > 0);
        let mut got = Vec::new();
        while let Some(part) = sb.read(10_000).await {
            assert!(part.len() <= 10_000);
            assert!(sb.buffered() <= 64 * 1024);
            got.extend(part);
        }
        writer.await.unwrap();
        assert_eq!(got.len(), expect.len());
        assert!(got == expect, "bytes differ");
        assert!(sb.drained());
    }
}

//! Test data: HLS-like directories and rendition sets of random bytes, and the generator behind
//! them.

use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};
use tempfile::TempDir;

/// An HLS-like directory: `<tmp>/<name>/index.m3u8` and `segNNN.ts` segments of random bytes,
/// about `total_bytes` in all. The bytes differ on every call, so every call yields a new CID.
pub fn make_hls_dir(name: &str, total_bytes: usize, segments: usize) -> Result<(TempDir, PathBuf)> {
    let tmp = tempfile::Builder::new()
        .prefix("pinwarden-hls-")
        .tempdir()
        .context("creating a temporary directory")?;
    let dir = tmp.path().join(name);
    std::fs::create_dir(&dir)?;
    let segments = segments.max(1);
    let per_segment = total_bytes / segments;
    let mut rng = XorShift::seeded();
    let mut playlist = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n");
    for i in 0..segments {
        let name = format!("seg{i:03}.ts");
        let mut data = vec![0u8; per_segment];
        rng.fill(&mut data);
        std::fs::write(dir.join(&name), &data)?;
        let _ = write!(playlist, "#EXTINF:4.000,\n{name}\n");
    }
    playlist.push_str("#EXT-X-ENDLIST\n");
    std::fs::write(dir.join("index.m3u8"), playlist)?;
    Ok((tmp, dir))
}

/// A real-size HLS rendition set: `<tmp>/<name>/master.m3u8` and one directory per rendition
/// (`1080p`, `720p`, `480p`: half, 30 % and 20 % of `total_bytes`), each with its `index.m3u8`
/// and `segNNN.ts` segments of `segment_bytes` (the last one shorter) of random bytes. Written
/// through a 1 MiB buffer, so a set of several GB never sits in memory. New bytes (and so a new
/// CID) on every call.
pub fn make_hls_set(
    name: &str,
    total_bytes: u64,
    segment_bytes: u64,
) -> Result<(TempDir, PathBuf)> {
    use std::io::Write as _;
    const RENDITIONS: [(&str, u64); 3] = [("1080p", 50), ("720p", 30), ("480p", 20)];
    let tmp = tempfile::Builder::new()
        .prefix("pinwarden-hls-set-")
        .tempdir()
        .context("creating a temporary directory")?;
    let root = tmp.path().join(name);
    std::fs::create_dir(&root)?;
    let segment_bytes = segment_bytes.max(1);
    let mut rng = XorShift::seeded();
    let mut buffer = vec![0u8; 1 << 20];
    let mut master = String::from("#EXTM3U\n");
    for (rendition, percent) in RENDITIONS {
        let dir = root.join(rendition);
        std::fs::create_dir(&dir)?;
        let mut left = total_bytes * percent / 100;
        let mut playlist = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n");
        // Bounded: every segment takes at least one byte off `left`.
        for i in 0.. {
            if left == 0 {
                break;
            }
            let size = left.min(segment_bytes);
            let segment = format!("seg{i:03}.ts");
            let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join(&segment))?);
            let mut written = 0u64;
            while written < size {
                let n = (size - written).min(buffer.len() as u64) as usize;
                rng.fill(&mut buffer[..n]);
                out.write_all(&buffer[..n])?;
                written += n as u64;
            }
            out.flush()?;
            left -= size;
            let _ = write!(playlist, "#EXTINF:4.000,\n{segment}\n");
        }
        playlist.push_str("#EXT-X-ENDLIST\n");
        std::fs::write(dir.join("index.m3u8"), playlist)?;
        let _ = write!(
            master,
            "#EXT-X-STREAM-INF:NAME={rendition}\n{rendition}/index.m3u8\n"
        );
    }
    std::fs::write(root.join("master.m3u8"), master)?;
    Ok((tmp, root))
}

/// Random enough for test data, without a dependency.
pub struct XorShift(u64);

impl XorShift {
    /// Seeded from the clock, the pid and a counter: distinct across calls and processes.
    pub fn seeded() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let seed = nanos
            ^ (u64::from(std::process::id()) << 32)
            ^ COUNTER
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        XorShift(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

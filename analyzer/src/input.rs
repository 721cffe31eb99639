//! Opening log inputs: files or stdin, plain, gzip or zstd (recognised by their magic bytes,
//! not their names, since rotated logs are often renamed).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel, sync_channel};
use std::sync::{Arc, Mutex};

use indicatif::ProgressBar;

/// Read buffers: ingest hands lines on where they lie in the buffer and copies only those that
/// straddle two fills, so a buffer of many lines (Redis MONITOR lines carry whole values)
/// keeps copies rare.
const BUFFER_BYTES: usize = 1 << 18;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// How an input was compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// An opened input: its decompressed bytes, and a tap on the bytes as stored.
pub struct Input {
    pub reader: Box<dyn BufRead + Send>,
    pub compression: Compression,
    tap: Arc<Tap>,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("compression", &self.compression)
            .finish()
    }
}

impl Input {
    /// The blake3 of every stored byte read so far: the input's fingerprint once it has been
    /// read to the end.
    pub fn fingerprint(&self) -> String {
        let hasher = self.tap.hasher.lock().unwrap_or_else(|e| e.into_inner());
        format!("blake3:{}", hasher.finalize().to_hex())
    }

    /// Stored bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.tap.bytes.load(Ordering::Relaxed)
    }
}

/// Sees every stored byte on its way to the decompressor: hashes it and moves the progress bar.
struct Tap {
    hasher: Mutex<blake3::Hasher>,
    bytes: AtomicU64,
    progress: ProgressBar,
}

struct TapReader<R> {
    inner: R,
    tap: Arc<Tap>,
}

impl<R: Read> Read for TapReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.tap
            .hasher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .update(&buf[..n]);
        self.tap.bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.tap.progress.inc(n as u64);
        Ok(n)
    }
}

/// Chunks of the stored bytes read ahead: one being parsed, these waiting.
const QUEUED_CHUNKS: usize = 2;

/// The stored bytes, read (and hashed, by the [`Tap`]) on a thread of their own: the read's
/// copy out of the page cache and blake3 are a tenth of parsing a MONITOR log, and the
/// parsing thread is the one an ingest waits for. Chunks go back to the reading thread to be
/// filled again, so the read allocates nothing once under way.
struct ChunkReader {
    chunks: Receiver<io::Result<(Vec<u8>, usize)>>,
    recycle: Sender<Vec<u8>>,
    chunk: Vec<u8>,
    filled: usize,
    position: usize,
    ended: bool,
}

impl ChunkReader {
    fn spawn(mut raw: impl Read + Send + 'static) -> ChunkReader {
        let (sender, chunks) = sync_channel(QUEUED_CHUNKS);
        let (recycle, recycled) = channel::<Vec<u8>>();
        std::thread::Builder::new()
            .name("input-reader".into())
            .spawn(move || {
                loop {
                    let mut chunk = recycled
                        .try_recv()
                        .unwrap_or_else(|_| vec![0; BUFFER_BYTES]);
                    let read = loop {
                        match raw.read(&mut chunk) {
                            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                            other => break other,
                        }
                    };
                    let (message, last) = match read {
                        Ok(0) => return,
                        Ok(filled) => (Ok((chunk, filled)), false),
                        Err(error) => (Err(error), true),
                    };
                    // A send fails when the input is no longer read (an ingest that stopped).
                    if sender.send(message).is_err() || last {
                        return;
                    }
                }
            })
            .expect("the system can start a thread");
        ChunkReader {
            chunks,
            recycle,
            chunk: Vec::new(),
            filled: 0,
            position: 0,
            ended: false,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.position == self.filled && !self.ended {
            match self.chunks.recv() {
                Ok(Ok((chunk, filled))) => {
                    let used = std::mem::replace(&mut self.chunk, chunk);
                    if !used.is_empty() {
                        let _ = self.recycle.send(used);
                    }
                    self.filled = filled;
                    self.position = 0;
                }
                Ok(Err(error)) => {
                    self.ended = true;
                    return Err(error);
                }
                // The reading thread hung up: the end of the input.
                Err(_) => self.ended = true,
            }
        }
        Ok(&self.chunk[self.position..self.filled])
    }

    fn consume(&mut self, amount: usize) {
        self.position = (self.position + amount).min(self.filled);
    }
}

/// Opens `path` (`-` for stdin) as a buffered stream of decompressed bytes; `progress` advances
/// by the stored bytes read.
pub fn open(path: &str, progress: ProgressBar) -> io::Result<Input> {
    let raw: Box<dyn Read + Send> = if path == "-" {
        Box::new(io::stdin())
    } else {
        let file = File::open(Path::new(path))?;
        if let Ok(metadata) = file.metadata() {
            progress.set_length(metadata.len());
        }
        Box::new(file)
    };
    let tap = Arc::new(Tap {
        hasher: Mutex::new(blake3::Hasher::new()),
        bytes: AtomicU64::new(0),
        progress,
    });
    let raw = TapReader {
        inner: raw,
        tap: Arc::clone(&tap),
    };
    let mut raw = ChunkReader::spawn(raw);
    let head = raw.fill_buf()?;
    let (reader, compression): (Box<dyn BufRead + Send>, Compression) =
        if head.starts_with(&GZIP_MAGIC) {
            // MultiGzDecoder: `cat a.gz b.gz` and rotated logs hold several gzip members.
            let decoder = flate2::bufread::MultiGzDecoder::new(raw);
            (
                Box::new(BufReader::with_capacity(BUFFER_BYTES, decoder)),
                Compression::Gzip,
            )
        } else if head.starts_with(&ZSTD_MAGIC) {
            let decoder = zstd::stream::read::Decoder::with_buffer(raw)?;
            (
                Box::new(BufReader::with_capacity(BUFFER_BYTES, decoder)),
                Compression::Zstd,
            )
        } else {
            (Box::new(raw), Compression::None)
        };
    Ok(Input {
        reader,
        compression,
        tap,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(path: &str) -> (String, Compression) {
        let mut input = open(path, ProgressBar::hidden()).unwrap();
        let mut text = String::new();
        input.reader.read_to_string(&mut text).unwrap();
        (text, input.compression)
    }

    /// Compressed inputs are recognised by content, whatever their file name says.
    #[test]
    fn detects_compression_by_magic() {
        let dir = tempfile::tempdir().unwrap();
        let text = "ts,key\n1,a\n";

        let plain = dir.path().join("plain.log");
        std::fs::write(&plain, text).unwrap();

        let gz = dir.path().join("rotated.log.1");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(text.as_bytes()).unwrap();
        std::fs::write(&gz, encoder.finish().unwrap()).unwrap();

        let zst = dir.path().join("archive");
        std::fs::write(&zst, zstd::encode_all(text.as_bytes(), 3).unwrap()).unwrap();

        for (path, expected) in [
            (plain, Compression::None),
            (gz, Compression::Gzip),
            (zst, Compression::Zstd),
        ] {
            let (read, compression) = read_all(path.to_str().unwrap());
            assert_eq!((read.as_str(), compression), (text, expected));
        }
    }

    /// The fingerprint is the hash of the stored bytes, so a copy of a file has the same one.
    #[test]
    fn fingerprint_is_the_hash_of_the_stored_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.log");
        let b = dir.path().join("copy-of-a.log");
        let c = dir.path().join("c.log");
        std::fs::write(&a, "ts,key\n1,a\n").unwrap();
        std::fs::copy(&a, &b).unwrap();
        std::fs::write(&c, "ts,key\n1,b\n").unwrap();
        let fingerprint = |path: &Path| {
            let mut input = open(path.to_str().unwrap(), ProgressBar::hidden()).unwrap();
            std::io::copy(&mut input.reader, &mut std::io::sink()).unwrap();
            assert_eq!(input.bytes_read(), std::fs::metadata(path).unwrap().len());
            input.fingerprint()
        };
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
        let expected = format!("blake3:{}", blake3::hash(b"ts,key\n1,a\n").to_hex());
        assert_eq!(fingerprint(&a), expected);
    }
}

//! Opening log inputs: files or stdin, plain, gzip or zstd (recognised by their magic bytes,
//! not their names, since rotated logs are often renamed).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

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

/// Opens `path` (`-` for stdin) as a buffered stream of decompressed bytes.
pub fn open(path: &str) -> io::Result<(Box<dyn BufRead + Send>, Compression)> {
    let raw: Box<dyn Read + Send> = if path == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(Path::new(path))?)
    };
    let mut raw = BufReader::with_capacity(1 << 16, raw);
    let head = raw.fill_buf()?;
    if head.starts_with(&GZIP_MAGIC) {
        // MultiGzDecoder: `cat a.gz b.gz` and rotated logs hold several gzip members.
        let decoder = flate2::bufread::MultiGzDecoder::new(raw);
        Ok((
            Box::new(BufReader::with_capacity(1 << 16, decoder)),
            Compression::Gzip,
        ))
    } else if head.starts_with(&ZSTD_MAGIC) {
        let decoder = zstd::stream::read::Decoder::with_buffer(raw)?;
        Ok((
            Box::new(BufReader::with_capacity(1 << 16, decoder)),
            Compression::Zstd,
        ))
    } else {
        Ok((Box::new(raw), Compression::None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(path: &str) -> (String, Compression) {
        let (mut reader, compression) = open(path).unwrap();
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        (text, compression)
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
}

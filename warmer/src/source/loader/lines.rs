//! Reading a loader's output one line at a time without ever holding more than a limit.
//!
//! Hand-written rather than `AsyncBufReadExt::read_until`: that one grows its buffer until it
//! finds a newline, so a loader that writes a 2 GiB line (or never a newline) would take the
//! warmer's memory with it. Here a line past the limit is read through and dropped, and the
//! caller is told.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// What one read gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// A line is in the buffer, without its newline.
    Line,
    /// A line longer than the limit went by; the buffer is empty.
    TooLong,
    /// The stream ended (a last line without a newline is returned as a [`Read::Line`] first).
    Eof,
}

/// Reads the next line of `reader` into `line` (cleared first), holding at most `limit` bytes.
/// Not cancel-safe: a read stopped halfway leaves the stream inside a line (the caller stops
/// such a loader anyway).
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Read> {
    line.clear();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if too_long {
                Read::TooLong
            } else if line.is_empty() {
                Read::Eof
            } else {
                Read::Line
            });
        }
        let (chunk, found) = match memchr::memchr(b'\n', available) {
            Some(at) => (&available[..at], Some(at + 1)),
            None => (available, None),
        };
        if !too_long {
            if line.len() + chunk.len() > limit {
                too_long = true;
                line.clear();
                line.shrink_to(limit.min(1 << 16));
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = found.unwrap_or(available.len());
        reader.consume(used);
        if found.is_some() {
            return Ok(if too_long { Read::TooLong } else { Read::Line });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Lines come back one by one; one over the limit is skipped whole, and the next line is
    /// read intact; a last line without a newline still counts.
    #[tokio::test]
    async fn reads_lines_within_the_limit() {
        let input: &[u8] = b"short\nthis one is far too long\nok\nlast";
        // A tiny buffer, so lines span several fills.
        let mut reader = tokio::io::BufReader::with_capacity(4, input);
        let mut line = Vec::new();
        let mut seen = Vec::new();
        loop {
            match read_line(&mut reader, &mut line, 10).await.unwrap() {
                Read::Line => seen.push(String::from_utf8(line.clone()).unwrap()),
                Read::TooLong => seen.push("<too long>".to_owned()),
                Read::Eof => break,
            }
        }
        assert_eq!(seen, ["short", "<too long>", "ok", "last"]);
    }
}

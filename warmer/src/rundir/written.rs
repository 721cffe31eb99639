//! The written-keys log: what a run wrote, so `warmer undo` can take it back.
//!
//! One file per target in the run directory, `written-<target index>.jsonl`, appended to by
//! the run and by every resume of it. Two kinds of line, both compact JSON:
//!
//! - `{"op":"sent","run":R,"start":S,"keys":[…],"hashes":[…]}` before a batch goes to the
//!   store: its keys and the hash of each value and its flags ([`item_hash`](crate::store::item_hash)),
//!   `R` counting the run's invocations (0, then 1 for the first resume…) and `S` the batch's
//!   first manifest index. When a store key differs from its manifest key (a loader's), the
//!   line also has `"entries":[o…]`: each key's manifest entry, as an offset from `S`, so that
//!   the final coverage probe asks the store for the keys the run wrote ([`store_keys`]).
//! - `{"op":"written","run":R,"start":S,"written":[i…]}` once the store answered: which of the
//!   batch's keys were written (rather than found present, refused…).
//!
//! A `sent` line without its `written` line is a batch whose answer the run never saw (a
//! `kill -9` while it was on the wire): undo treats each of its keys as possibly written, and
//! still deletes only where the key holds the value the run would have written. Lines are
//! flushed to the file before the batch is sent and before the checkpoint moves past it.
//!
//! The keys are kept in clear, sensitive ones too: undo must name each key to the store, and
//! that is all the log holds besides the value hashes. So the file is its owner's only (`0600`,
//! in a `0700` run directory), and reports show sensitive keys hashed instead
//! ([`super::mask`]).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Record {
    Sent {
        run: u32,
        start: u64,
        keys: Vec<String>,
        hashes: Vec<String>,
        /// Each key's manifest entry, as an offset from `start`; empty when every key is its
        /// entry's manifest key.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        entries: Vec<u32>,
    },
    Written {
        run: u32,
        start: u64,
        written: Vec<u32>,
    },
}

/// The log file of target `index` in `run_dir`.
pub fn log_path(run_dir: &Path, index: usize) -> PathBuf {
    run_dir.join(format!("written-{index}.jsonl"))
}

/// Appends records to one target's log.
#[derive(Debug)]
pub struct WrittenLog {
    path: PathBuf,
    file: File,
}

impl WrittenLog {
    /// Opens the log for appending. A torn last line (a process killed mid-write) is ended
    /// first, so the next record starts a line of its own.
    pub fn open(path: PathBuf) -> std::io::Result<WrittenLog> {
        let mut file = super::open_owner_only(&path)?;
        let length = file.metadata()?.len();
        if length > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(length - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        Ok(WrittenLog { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` and hands it to the OS (which keeps it through a `kill -9`).
    pub fn append(&mut self, record: &Record) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        // One write call per line: a kill can tear only the line being written.
        self.file.write_all(&line)
    }

    /// Appends the `sent` record of a batch, the same line [`append`](Self::append) writes for
    /// a [`Record::Sent`], without building one: the warm logs every key it sends, and owned
    /// copies of each key and hash were a tenth of its time. `hashes` are the value hashes,
    /// concatenated (32 hex digits each, see [`value_hash`](crate::store::value_hash));
    /// `entries` as in the record (empty: left out).
    pub fn append_sent<'k>(
        &mut self,
        run: u32,
        start: u64,
        keys: impl Iterator<Item = &'k str>,
        hashes: &str,
        entries: &[u32],
    ) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(64 + hashes.len() * 3);
        write!(
            line,
            "{{\"op\":\"sent\",\"run\":{run},\"start\":{start},\"keys\":["
        )?;
        for (n, key) in keys.enumerate() {
            if n > 0 {
                line.push(b',');
            }
            serde_json::to_writer(&mut line, key)?;
        }
        line.extend_from_slice(b"],\"hashes\":[");
        for (n, hash) in hashes.as_bytes().chunks(32).enumerate() {
            if n > 0 {
                line.push(b',');
            }
            line.push(b'"');
            line.extend_from_slice(hash);
            line.push(b'"');
        }
        line.push(b']');
        if !entries.is_empty() {
            line.extend_from_slice(b",\"entries\":");
            serde_json::to_writer(&mut line, entries)?;
        }
        line.extend_from_slice(b"}\n");
        self.file.write_all(&line)
    }
}

/// The store keys the log says were sent for manifest entries whose keys differ from their
/// manifest key (a loader's), by manifest index: the last invocation that sent an entry gives
/// its keys. Entries not listed were sent under their manifest key, or not at all.
pub fn store_keys(path: &Path) -> std::io::Result<HashMap<u64, Vec<String>>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e),
    };
    let mut sent: BTreeMap<(u32, u64), (Vec<String>, Vec<u32>)> = BTreeMap::new();
    for line in BufReader::new(file).lines() {
        let line = line?;
        // A torn last line (the process died mid-write) is skipped: its batch was not sent.
        if let Ok(Record::Sent {
            run,
            start,
            keys,
            entries,
            ..
        }) = serde_json::from_str::<Record>(&line)
            && !entries.is_empty()
        {
            sent.insert((run, start), (keys, entries));
        }
    }
    let mut by_entry: HashMap<u64, Vec<String>> = HashMap::new();
    for ((_, start), (keys, entries)) in sent {
        let mut seen_here = std::collections::HashSet::new();
        for (key, offset) in keys.into_iter().zip(entries) {
            let index = start + u64::from(offset);
            let slot = by_entry.entry(index).or_default();
            // A later invocation's keys replace an earlier one's.
            if seen_here.insert(index) {
                slot.clear();
            }
            slot.push(key);
        }
    }
    Ok(by_entry)
}

/// Whether the run saw a key written, or only sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Certainty {
    Written,
    /// Sent, answer never seen.
    Unconfirmed,
}

/// The keys a target's log says the run wrote (or may have), each with the hash of the last
/// value sent for it, in the order first sent.
pub fn read_log(path: &Path) -> std::io::Result<Vec<(String, String, Certainty)>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut sent: BTreeMap<(u32, u64), (Vec<String>, Vec<String>)> = BTreeMap::new();
    let mut written: HashMap<(u32, u64), Vec<u32>> = HashMap::new();
    for line in BufReader::new(file).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        // A torn last line (the process died mid-write) is skipped: its batch was not sent.
        let Ok(record) = serde_json::from_str::<Record>(&line) else {
            continue;
        };
        match record {
            Record::Sent {
                run,
                start,
                keys,
                hashes,
                ..
            } => {
                sent.insert((run, start), (keys, hashes));
            }
            Record::Written {
                run,
                start,
                written: indexes,
            } => {
                written.insert((run, start), indexes);
            }
        }
    }
    let mut keys: Vec<(String, String, Certainty)> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (id, (batch_keys, hashes)) in sent {
        let mut add = |key: &String, hash: &String, certainty: Certainty| match seen.get(key) {
            Some(&at) => {
                let slot = &mut keys[at];
                slot.1.clone_from(hash);
                if certainty == Certainty::Written {
                    slot.2 = Certainty::Written;
                }
            }
            None => {
                seen.insert(key.clone(), keys.len());
                keys.push((key.clone(), hash.clone(), certainty));
            }
        };
        match written.get(&id) {
            Some(indexes) => {
                for &i in indexes {
                    if let (Some(key), Some(hash)) =
                        (batch_keys.get(i as usize), hashes.get(i as usize))
                    {
                        add(key, hash, Certainty::Written);
                    }
                }
            }
            None => {
                for (key, hash) in batch_keys.iter().zip(&hashes) {
                    add(key, hash, Certainty::Unconfirmed);
                }
            }
        }
    }
    Ok(keys)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The fast `sent` line is the line serde writes for the record.
    #[test]
    fn sent_lines_match_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), 0);
        let mut log = WrittenLog::open(path.clone()).unwrap();
        let keys = ["a", "b \"quoted\" \\ é \u{1}"];
        let hashes = [
            crate::store::value_hash(b"1"),
            crate::store::value_hash(b"2"),
        ];
        log.append_sent(1, 500, keys.iter().copied(), &hashes.concat(), &[])
            .unwrap();
        log.append_sent(1, 502, keys.iter().copied(), &hashes.concat(), &[0, 3])
            .unwrap();
        let mut expected = Vec::new();
        for (start, entries) in [(500, vec![]), (502, vec![0, 3])] {
            let record = Record::Sent {
                run: 1,
                start,
                keys: keys.iter().map(|k| (*k).to_owned()).collect(),
                hashes: hashes.to_vec(),
                entries,
            };
            serde_json::to_writer(&mut expected, &record).unwrap();
            expected.push(b'\n');
        }
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }

    /// The store keys of each entry sent under keys of its own, by manifest index; a resume
    /// that sent an entry again gives its keys; entries sent under their manifest key are
    /// not listed.
    #[test]
    fn store_keys_by_manifest_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), 0);
        let mut log = WrittenLog::open(path.clone()).unwrap();
        let hashes = |n: usize| crate::store::value_hash(b"v").repeat(n);
        log.append_sent(
            0,
            10,
            ["v2:a", "v2:a:meta", "v2:c"].into_iter(),
            &hashes(3),
            &[0, 0, 2],
        )
        .unwrap();
        log.append_sent(0, 20, ["plain"].into_iter(), &hashes(1), &[])
            .unwrap();
        log.append_sent(1, 10, ["v3:a"].into_iter(), &hashes(1), &[0])
            .unwrap();
        drop(log);
        let keys = store_keys(&path).unwrap();
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[&10], strings(&["v3:a"]));
        assert_eq!(keys[&12], strings(&["v2:c"]));
        assert!(store_keys(&dir.path().join("absent")).unwrap().is_empty());
    }

    /// A batch answered lists only its written keys; one never answered lists all its keys;
    /// a torn last line is ignored.
    #[test]
    fn reads_written_and_unconfirmed_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), 0);
        let mut log = WrittenLog::open(path.clone()).unwrap();
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        log.append(&Record::Sent {
            run: 0,
            start: 0,
            keys: strings(&["a", "b"]),
            hashes: strings(&["ha", "hb"]),
            entries: Vec::new(),
        })
        .unwrap();
        log.append(&Record::Written {
            run: 0,
            start: 0,
            written: vec![1],
        })
        .unwrap();
        log.append(&Record::Sent {
            run: 0,
            start: 2,
            keys: strings(&["c"]),
            hashes: strings(&["hc"]),
            entries: Vec::new(),
        })
        .unwrap();
        drop(log);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"{\"op\":\"sent\",\"run\":1,\"sta").unwrap();
        let keys = read_log(&path).unwrap();
        assert_eq!(
            keys,
            vec![
                ("b".to_owned(), "hb".to_owned(), Certainty::Written),
                ("c".to_owned(), "hc".to_owned(), Certainty::Unconfirmed),
            ]
        );
    }
}

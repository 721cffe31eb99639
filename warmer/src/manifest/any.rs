//! The general parser: a manifest in any layout JSON allows (one line, pretty-printed…), read
//! as a stream with serde, each entry parsed in full.

use std::borrow::Cow;

use schemas::{MANIFEST_SCHEMA_ID, ManifestEntry, ManifestHeader};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::{Bytes, ManifestError, OnEntry};

impl Bytes {
    /// A pass over a manifest in any JSON layout, entries parsed in full.
    pub(super) fn scan_any(
        &self,
        on_entry: &mut OnEntry<'_>,
    ) -> Result<ManifestHeader, ManifestError> {
        let reader = self.reader()?;
        let mut deserializer = serde_json::Deserializer::from_reader(reader);
        let header = ManifestSeed { on_entry }
            .deserialize(&mut deserializer)
            .and_then(|header| deserializer.end().map(|()| header))
            .map_err(|e| self.parse_error(e))?;
        let header = header.ok_or_else(|| self.parse_error("missing field `header`"))?;
        self.header_from(header)
    }
}

/// JSON `text` without the whitespace between tokens (strings kept as they are).
pub(super) fn minified(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for &b in text {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !b.is_ascii_whitespace() {
            in_string = b == b'"';
            out.push(b);
        }
    }
    out
}

/// The top-level object of a manifest in any layout; entries go to `on_entry` one by one.
struct ManifestSeed<'f> {
    on_entry: &'f mut OnEntry<'f>,
}

impl<'de> DeserializeSeed<'de> for ManifestSeed<'_> {
    type Value = Option<serde_json::Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ManifestSeed<'_> {
    type Value = Option<serde_json::Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a manifest object with `header` and `entries`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        let mut header = None;
        let mut entries = false;
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            match name.as_ref() {
                "header" => header = Some(map.next_value::<serde_json::Value>()?),
                "entries" => {
                    if let Some(schema) = header.as_ref().and_then(|h| h.get("schema"))
                        && schema.as_str() != Some(MANIFEST_SCHEMA_ID)
                    {
                        // Another version: stop here, the header says what is wrong.
                        map.next_value::<IgnoredAny>()?;
                        entries = true;
                        continue;
                    }
                    map.next_value_seed(EntriesSeed {
                        on_entry: &mut *self.on_entry,
                    })?;
                    entries = true;
                }
                other => return Err(A::Error::unknown_field(other, &["header", "entries"])),
            }
        }
        if !entries {
            return Err(A::Error::missing_field("entries"));
        }
        Ok(header)
    }
}

struct EntriesSeed<'f> {
    on_entry: &'f mut OnEntry<'f>,
}

impl<'de> DeserializeSeed<'de> for EntriesSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        use serde::de::Error;
        let mut index = 0usize;
        while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
            let entry: ManifestEntry = serde_json::from_str(raw.get())
                .map_err(|e| A::Error::custom(format!("entries[{index}]: {e}")))?;
            (self.on_entry)(raw.get().as_bytes(), entry).map_err(A::Error::custom)?;
            index += 1;
        }
        Ok(())
    }
}

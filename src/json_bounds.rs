//! JSON maps of strings read with their bounds checked while they are read:
//! a hostile body cannot make the service build a map in proportion to its
//! size before a limit is looked at. Each string is measured before it is
//! copied (serde_json hands it over borrowed, or from its scratch buffer),
//! so nothing over a bound is ever allocated.
//!
//! - [`user_metadata`]: the `metadata` of a `put` command: names and values
//!   together at most 2 KiB (S3's limit for user metadata); past that the
//!   read stops with an error carrying [`USER_METADATA_OVER`].
//! - [`CustomMetadata`]: the `metadata` of a Cloud Storage object resource:
//!   kept up to Cloud Storage's own limit of 8 KiB, the rest skipped and
//!   the map marked as over it.
//! - [`attributes`]: Pub/Sub message attributes, within Pub/Sub's limits
//!   (100 attributes, names of 256 bytes, values of 1024 bytes); more stops
//!   the read with an error carrying [`ATTRIBUTES_OVER`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

/// The most user metadata (names and values) S3 stores with an object.
pub(crate) const USER_METADATA_LIMIT: usize = 2048;
/// Cloud Storage's own limit on an object's custom metadata (names and
/// values).
pub(crate) const GCS_METADATA_LIMIT: usize = 8192;
/// Pub/Sub's limits on message attributes.
pub(crate) const MAX_ATTRIBUTES: usize = 100;
pub(crate) const MAX_ATTRIBUTE_NAME: usize = 256;
pub(crate) const MAX_ATTRIBUTE_VALUE: usize = 1024;

/// The words of the error that ends the read of a `put`'s metadata over
/// 2 KiB (callers tell it from other JSON errors by them).
pub(crate) const USER_METADATA_OVER: &str = "user metadata is over 2 KiB";
/// The words of the error that ends the read of attributes over Pub/Sub's
/// limits.
pub(crate) const ATTRIBUTES_OVER: &str = "message attributes are over Pub/Sub's limits";

/// An optional string borrowed from the input when it has no escapes
/// (serde borrows a `Cow<str>` field, but not an `Option<Cow<str>>`: that
/// one is always a copy).
pub(crate) fn opt_cow<'de: 'a, 'a, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed<'a>>::deserialize(d)?.map(|b| b.0))
}

/// What an entry counts against a metadata limit: its name and value, an
/// empty name (never valid) as one byte, so that empty entries add up too.
fn entry_cost(name: &str, value: &str) -> usize {
    name.len().max(1) + value.len()
}

/// A string copied only when it is at most `max` bytes; `None` otherwise.
struct StrUpTo(usize);

impl<'de> DeserializeSeed<'de> for StrUpTo {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for StrUpTo {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<String>, E> {
        Ok((v.len() <= self.0).then(|| v.to_owned()))
    }
}

/// `metadata` of a `put`: `{name: value}` of at most
/// [`USER_METADATA_LIMIT`] bytes in all, else an error with
/// [`USER_METADATA_OVER`] as soon as the entries read add up past it.
pub(crate) fn user_metadata<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<HashMap<String, String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = HashMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object of string names and values")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let over = || de::Error::custom(format!("{USER_METADATA_OVER} (S3's limit)"));
            let mut out = HashMap::new();
            let mut used = 0usize;
            while let Some(name) = map.next_key_seed(StrUpTo(USER_METADATA_LIMIT - used))? {
                let name = name.ok_or_else(over)?;
                let left = USER_METADATA_LIMIT
                    .checked_sub(used + name.len().max(1))
                    .ok_or_else(over)?;
                let value = map.next_value_seed(StrUpTo(left))?.ok_or_else(over)?;
                used += entry_cost(&name, &value);
                out.insert(name, value);
            }
            Ok(out)
        }
    }
    d.deserialize_map(V)
}

/// The custom metadata of a Cloud Storage object resource. Cloud Storage
/// keeps at most [`GCS_METADATA_LIMIT`] bytes of it; a resource with more
/// is not one Cloud Storage wrote, so the read keeps entries up to that
/// bound, skips the rest without keeping it, and marks the map
/// [`over_limit`](CustomMetadata::over_limit). No error: the resource
/// still decodes, and replication refuses it with its own
/// `metadata_too_large` (anything over 8 KiB is over S3's 2 KiB too), as it
/// refuses metadata between 2 and 8 KiB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CustomMetadata {
    /// The entries read.
    pub(crate) entries: HashMap<String, String>,
    /// More than [`GCS_METADATA_LIMIT`] bytes were there: `entries` holds
    /// only the first of them.
    pub(crate) over_limit: bool,
}

impl CustomMetadata {
    /// Metadata of `entries`, within the limit.
    #[cfg(test)]
    pub(crate) fn of(entries: &[(&str, &str)]) -> CustomMetadata {
        CustomMetadata {
            entries: entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            over_limit: false,
        }
    }
}

impl<'de> Deserialize<'de> for CustomMetadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<CustomMetadata, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CustomMetadata;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string names and values, or null")
            }
            fn visit_unit<E: de::Error>(self) -> Result<CustomMetadata, E> {
                Ok(CustomMetadata::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<CustomMetadata, E> {
                Ok(CustomMetadata::default())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<CustomMetadata, D::Error> {
                d.deserialize_map(V)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CustomMetadata, A::Error> {
                let mut out = CustomMetadata::default();
                // Invariant: used <= GCS_METADATA_LIMIT.
                let mut used = 0usize;
                loop {
                    if out.over_limit {
                        if map.next_entry::<IgnoredAny, IgnoredAny>()?.is_none() {
                            return Ok(out);
                        }
                        continue;
                    }
                    let left = GCS_METADATA_LIMIT - used;
                    let Some(name) = map.next_key_seed(StrUpTo(left))? else {
                        return Ok(out);
                    };
                    let value_left = name.as_ref().and_then(|n| left.checked_sub(n.len().max(1)));
                    let value = map.next_value_seed(StrUpTo(value_left.unwrap_or(0)))?;
                    match (name, value_left, value) {
                        (Some(name), Some(_), Some(value)) => {
                            used += entry_cost(&name, &value);
                            out.entries.insert(name, value);
                        }
                        _ => out.over_limit = true,
                    }
                }
            }
        }
        d.deserialize_option(V)
    }
}

/// Pub/Sub message attributes: at most [`MAX_ATTRIBUTES`], names of at most
/// [`MAX_ATTRIBUTE_NAME`] bytes and values of at most
/// [`MAX_ATTRIBUTE_VALUE`]; more stops the read with an error carrying
/// [`ATTRIBUTES_OVER`]. `null` reads as no attributes.
pub(crate) fn attributes<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<HashMap<String, String>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<HashMap<String, String>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object of string names and values, or null")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(V)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let over = |what: String| de::Error::custom(format!("{ATTRIBUTES_OVER}: {what}"));
            let mut out = HashMap::new();
            let mut read = 0usize;
            while let Some(name) = map.next_key_seed(StrUpTo(MAX_ATTRIBUTE_NAME))? {
                read += 1;
                if read > MAX_ATTRIBUTES {
                    return Err(over(format!("more than {MAX_ATTRIBUTES} attributes")));
                }
                let name = name.ok_or_else(|| {
                    over(format!(
                        "an attribute name is over {MAX_ATTRIBUTE_NAME} bytes"
                    ))
                })?;
                let value = map
                    .next_value_seed(StrUpTo(MAX_ATTRIBUTE_VALUE))?
                    .ok_or_else(|| {
                        over(format!(
                            "the value of attribute {name:?} is over {MAX_ATTRIBUTE_VALUE} bytes"
                        ))
                    })?;
                out.insert(name, value);
            }
            Ok(Some(out))
        }
    }
    d.deserialize_option(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    struct Put {
        #[serde(default, deserialize_with = "user_metadata")]
        metadata: HashMap<String, String>,
    }

    #[derive(Deserialize, Debug)]
    struct Obj {
        #[serde(default)]
        metadata: CustomMetadata,
    }

    #[derive(Deserialize, Debug)]
    struct Msg {
        #[serde(default, deserialize_with = "attributes")]
        attributes: Option<HashMap<String, String>>,
    }

    fn object_of(entries: impl Iterator<Item = (String, String)>) -> String {
        let m: serde_json::Map<String, serde_json::Value> =
            entries.map(|(k, v)| (k, v.into())).collect();
        serde_json::json!({ "metadata": m }).to_string()
    }

    #[test]
    fn optional_strings_are_borrowed_without_escapes() {
        #[derive(Deserialize)]
        struct S<'a> {
            #[serde(default, borrow, deserialize_with = "opt_cow")]
            s: Option<Cow<'a, str>>,
        }
        let v: S = serde_json::from_str(r#"{"s":"plain"}"#).unwrap();
        assert!(matches!(v.s, Some(Cow::Borrowed("plain"))));
        let v: S = serde_json::from_str(r#"{"s":"a\nb"}"#).unwrap();
        assert!(matches!(v.s, Some(Cow::Owned(ref o)) if o == "a\nb"));
        let v: S = serde_json::from_str(r#"{"s":null}"#).unwrap();
        assert!(v.s.is_none());
        let v: S = serde_json::from_str(r#"{}"#).unwrap();
        assert!(v.s.is_none());
    }

    #[test]
    fn user_metadata_stops_past_2_kib() {
        let p: Put = serde_json::from_str(r#"{"metadata":{"a":"b","c":"d"}}"#).unwrap();
        assert_eq!(p.metadata.len(), 2);
        let p: Put = serde_json::from_str(r#"{}"#).unwrap();
        assert!(p.metadata.is_empty());
        // Exactly 2 KiB is fine; one byte more is not.
        let at = object_of(std::iter::once(("k".into(), "v".repeat(2047))));
        assert_eq!(serde_json::from_str::<Put>(&at).unwrap().metadata.len(), 1);
        let over = object_of(std::iter::once(("k".into(), "v".repeat(2048))));
        let e = serde_json::from_str::<Put>(&over).unwrap_err();
        assert!(e.to_string().contains(USER_METADATA_OVER), "{e}");
        // A long name alone, and many empty entries (each counts a byte).
        let long = object_of(std::iter::once(("n".repeat(5000), String::new())));
        assert!(serde_json::from_str::<Put>(&long).is_err());
        let mut empties = String::from(r#"{"metadata":{"#);
        for i in 0..3000 {
            if i > 0 {
                empties.push(',');
            }
            empties.push_str(r#""":"""#);
        }
        empties.push_str("}}");
        let e = serde_json::from_str::<Put>(&empties).unwrap_err();
        assert!(e.to_string().contains(USER_METADATA_OVER), "{e}");
        // Escaped strings are measured as decoded.
        let escaped = format!(r#"{{"metadata":{{"k":"{}"}}}}"#, "\\u0041".repeat(2000));
        assert_eq!(
            serde_json::from_str::<Put>(&escaped).unwrap().metadata["k"].len(),
            2000
        );
        assert!(serde_json::from_str::<Put>(r#"{"metadata":{"a":1}}"#).is_err());
    }

    #[test]
    fn custom_metadata_keeps_8_kib_and_marks_the_rest() {
        let o: Obj = serde_json::from_str(r#"{"metadata":{"a":"b"}}"#).unwrap();
        assert_eq!(o.metadata, CustomMetadata::of(&[("a", "b")]));
        let o: Obj = serde_json::from_str(r#"{"metadata":null}"#).unwrap();
        assert_eq!(o.metadata, CustomMetadata::default());
        let o: Obj = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(o.metadata, CustomMetadata::default());
        // 3 KiB: kept whole (replication refuses it later as too large).
        let three = object_of((0..3).map(|i| (format!("k{i}"), "v".repeat(1000))));
        let o: Obj = serde_json::from_str(&three).unwrap();
        assert_eq!(o.metadata.entries.len(), 3);
        assert!(!o.metadata.over_limit);
        // 100,000 entries: at most 8 KiB kept, marked.
        let many = object_of((0..100_000).map(|i| (format!("k{i}"), "v".into())));
        let o: Obj = serde_json::from_str(&many).unwrap();
        assert!(o.metadata.over_limit);
        let kept: usize = o
            .metadata
            .entries
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        assert!(kept <= GCS_METADATA_LIMIT, "{kept}");
        // One huge value.
        let huge = object_of(std::iter::once(("k".into(), "v".repeat(100_000))));
        let o: Obj = serde_json::from_str(&huge).unwrap();
        assert!(o.metadata.over_limit);
        assert!(o.metadata.entries.is_empty());
        assert!(serde_json::from_str::<Obj>(r#"{"metadata":[1]}"#).is_err());
    }

    #[test]
    fn attributes_within_pubsub_limits() {
        let m: Msg = serde_json::from_str(r#"{"attributes":{"a":"b"}}"#).unwrap();
        assert_eq!(m.attributes.unwrap()["a"], "b");
        let m: Msg = serde_json::from_str(r#"{"attributes":null}"#).unwrap();
        assert!(m.attributes.is_none());
        let hundred = object_of((0..100).map(|i| (format!("k{i}"), "v".into())))
            .replace(r#""metadata""#, r#""attributes""#);
        assert_eq!(
            serde_json::from_str::<Msg>(&hundred)
                .unwrap()
                .attributes
                .unwrap()
                .len(),
            100
        );
        let over = object_of((0..101).map(|i| (format!("k{i}"), "v".into())))
            .replace(r#""metadata""#, r#""attributes""#);
        let e = serde_json::from_str::<Msg>(&over).unwrap_err();
        assert!(e.to_string().contains(ATTRIBUTES_OVER), "{e}");
        let long_name = object_of(std::iter::once(("n".repeat(257), String::new())))
            .replace(r#""metadata""#, r#""attributes""#);
        assert!(serde_json::from_str::<Msg>(&long_name).is_err());
        let long_value = object_of(std::iter::once(("n".into(), "v".repeat(1025))))
            .replace(r#""metadata""#, r#""attributes""#);
        assert!(serde_json::from_str::<Msg>(&long_value).is_err());
        let at = object_of(std::iter::once(("n".repeat(256), "v".repeat(1024))))
            .replace(r#""metadata""#, r#""attributes""#);
        assert!(serde_json::from_str::<Msg>(&at).is_ok());
    }
}

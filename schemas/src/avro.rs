//! Avro single-object encoding (the Avro specification's `C3 01` marker, the schema's 8-byte Rabin
//! fingerprint, then the binary datum) of the records in [`crate::records`].
//!
//! A reader needs nothing but the `.avsc` files: the fingerprint names the schema a payload was written with.

use std::marker::PhantomData;

use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
use apache_avro::{from_avro_datum, from_value, to_avro_datum, to_value, Schema};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::records::{
    Ban, EdgeLease, LikeTotal, StreamEvent, StreamSettings, Subscription, ViewerCount,
};

/// The schema files, compiled in. They are the contract with analytics readers.
pub const STREAM_EVENT_AVSC: &str = include_str!("../avro/StreamEvent.avsc");
pub const SUBSCRIPTION_AVSC: &str = include_str!("../avro/Subscription.avsc");
pub const EDGE_LEASE_AVSC: &str = include_str!("../avro/EdgeLease.avsc");
pub const LIKE_TOTAL_AVSC: &str = include_str!("../avro/LikeTotal.avsc");
pub const BAN_AVSC: &str = include_str!("../avro/Ban.avsc");
pub const STREAM_SETTINGS_AVSC: &str = include_str!("../avro/StreamSettings.avsc");
pub const VIEWER_COUNT_AVSC: &str = include_str!("../avro/ViewerCount.avsc");

/// Earlier versions of each schema that data may still be written with (during a rolling upgrade, or in a
/// topic's retention): payloads carrying their fingerprints are read and resolved to the current schema.
const STREAM_EVENT_HISTORY: &[&str] = &[
    include_str!("../avro/history/StreamEvent/1.avsc"),
    include_str!("../avro/history/StreamEvent/2.avsc"),
];
const SUBSCRIPTION_HISTORY: &[&str] = &[include_str!("../avro/history/Subscription/1.avsc")];

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("payload of {len} bytes does not start with this schema's single-object header")]
    ForeignPayload { len: usize },
    #[error("payload does not match the {schema} schema: {source}")]
    Malformed {
        schema: &'static str,
        #[source]
        source: Box<apache_avro::Error>,
    },
    #[error("payload written with registry schema id {id}, which is not this schema's")]
    UnknownSchemaId { id: u32 },
    #[error("{trailing} unexpected bytes after a complete {schema} record")]
    TrailingBytes {
        schema: &'static str,
        trailing: usize,
    },
    #[error("record cannot be written as {schema}: {source}")]
    Unencodable {
        schema: &'static str,
        #[source]
        source: Box<apache_avro::Error>,
    },
    #[error("schema {schema} is not JSON: {source}")]
    SchemaJson {
        schema: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("schema {schema} does not parse: {source}")]
    Schema {
        schema: &'static str,
        #[source]
        source: Box<apache_avro::Error>,
    },
}

/// The schema whose Rabin fingerprint goes in the header. The Avro specification's Parsing Canonical Form
/// drops `logicalType` (a `timestamp-millis` long is plain `"long"`), as Java and Python readers do; the
/// apache-avro crate keeps it in its canonical form, which would give a fingerprint no other reader computes.
/// So the fingerprint is taken of the schema with every `logicalType` removed.
fn fingerprint_schema(name: &'static str, avsc: &str) -> Result<Schema, CodecError> {
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                map.remove("logicalType");
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let schema_error = |source| CodecError::Schema {
        schema: name,
        source: Box::new(source),
    };
    let mut json: serde_json::Value =
        serde_json::from_str(avsc).map_err(|source| CodecError::SchemaJson {
            schema: name,
            source,
        })?;
    strip(&mut json);
    Schema::parse(&json).map_err(schema_error)
}

/// Encoder and decoder for one record type. Cheap to share (`&self` everywhere); build it once.
#[derive(Debug)]
pub struct Codec<T> {
    name: &'static str,
    avsc: &'static str,
    schema: Schema,
    header: Vec<u8>,
    /// The id of this schema in a Confluent-compatible Schema Registry, when one is used: payloads are then
    /// written in the registry's framing (`00`, the id as 4 bytes big-endian, the datum), and read in both.
    registry_id: Option<u32>,
    /// Older versions of the schema, with their single-object headers.
    earlier: Vec<(Vec<u8>, Schema)>,
    _record: PhantomData<fn() -> T>,
}

/// First byte of the Confluent Schema Registry framing.
const REGISTRY_MAGIC: u8 = 0;

impl<T: Serialize + DeserializeOwned> Codec<T> {
    fn from_avsc(
        name: &'static str,
        avsc: &'static str,
        history: &[&'static str],
    ) -> Result<Self, CodecError> {
        let parse = |avsc: &str| -> Result<(Schema, Vec<u8>), CodecError> {
            let schema = Schema::parse_str(avsc).map_err(|e| CodecError::Schema {
                schema: name,
                source: Box::new(e),
            })?;
            let header = RabinFingerprintHeader::from_schema(&fingerprint_schema(name, avsc)?)
                .build_header();
            Ok((schema, header))
        };
        let (schema, header) = parse(avsc)?;
        let mut earlier = Vec::new();
        for old in history {
            let (old_schema, old_header) = parse(old)?;
            if old_header != header {
                earlier.push((old_header, old_schema));
            }
        }
        Ok(Codec {
            name,
            avsc,
            schema,
            header,
            registry_id: None,
            earlier,
            _record: PhantomData,
        })
    }

    /// Writes the Schema Registry framing with this schema id (and reads it besides single-object encoding).
    pub fn with_registry_id(mut self, id: Option<u32>) -> Self {
        self.registry_id = id;
        self
    }

    /// The schema file's text (with its docs and logical types), as it is registered in a schema registry.
    pub fn schema_json(&self) -> &'static str {
        self.avsc
    }

    /// The parsed schema this codec writes and expects.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    pub fn encode(&self, record: &T) -> Result<Vec<u8>, CodecError> {
        let unencodable = |e| CodecError::Unencodable {
            schema: self.name,
            source: Box::new(e),
        };
        let value = to_value(record)
            .and_then(|v| v.resolve(&self.schema))
            .map_err(unencodable)?;
        let datum = to_avro_datum(&self.schema, value).map_err(unencodable)?;
        let mut out = Vec::with_capacity(self.header.len() + datum.len());
        match self.registry_id {
            Some(id) => {
                out.push(REGISTRY_MAGIC);
                out.extend_from_slice(&id.to_be_bytes());
            }
            None => out.extend_from_slice(&self.header),
        }
        out.extend_from_slice(&datum);
        Ok(out)
    }

    /// Decodes a payload; anything that is not a complete record of this schema is an error, never a panic.
    pub fn decode(&self, payload: &[u8]) -> Result<T, CodecError> {
        let (writer, body) = match payload {
            [REGISTRY_MAGIC, a, b, c, d, body @ ..] => {
                let id = u32::from_be_bytes([*a, *b, *c, *d]);
                if self.registry_id != Some(id) {
                    return Err(CodecError::UnknownSchemaId { id });
                }
                (None, body)
            }
            _ => match payload.strip_prefix(self.header.as_slice()) {
                Some(body) => (None, body),
                None => self
                    .earlier
                    .iter()
                    .find_map(|(header, schema)| {
                        Some((Some(schema), payload.strip_prefix(header.as_slice())?))
                    })
                    .ok_or(CodecError::ForeignPayload { len: payload.len() })?,
            },
        };
        let malformed = |e| CodecError::Malformed {
            schema: self.name,
            source: Box::new(e),
        };
        let mut reader = body;
        let value = match writer {
            Some(writer) => from_avro_datum(writer, &mut reader, Some(&self.schema)),
            None => from_avro_datum(&self.schema, &mut reader, None),
        }
        .map_err(malformed)?;
        if !reader.is_empty() {
            return Err(CodecError::TrailingBytes {
                schema: self.name,
                trailing: reader.len(),
            });
        }
        from_value(&value).map_err(malformed)
    }
}

impl Codec<StreamEvent> {
    pub fn stream_event() -> Result<Self, CodecError> {
        Self::from_avsc("StreamEvent", STREAM_EVENT_AVSC, STREAM_EVENT_HISTORY)
    }
}

impl Codec<Subscription> {
    pub fn subscription() -> Result<Self, CodecError> {
        Self::from_avsc("Subscription", SUBSCRIPTION_AVSC, SUBSCRIPTION_HISTORY)
    }
}

impl Codec<EdgeLease> {
    pub fn edge_lease() -> Result<Self, CodecError> {
        Self::from_avsc("EdgeLease", EDGE_LEASE_AVSC, &[])
    }
}

impl Codec<LikeTotal> {
    pub fn like_total() -> Result<Self, CodecError> {
        Self::from_avsc("LikeTotal", LIKE_TOTAL_AVSC, &[])
    }
}

impl Codec<Ban> {
    pub fn ban() -> Result<Self, CodecError> {
        Self::from_avsc("Ban", BAN_AVSC, &[])
    }
}

impl Codec<StreamSettings> {
    pub fn stream_settings() -> Result<Self, CodecError> {
        Self::from_avsc("StreamSettings", STREAM_SETTINGS_AVSC, &[])
    }
}

impl Codec<ViewerCount> {
    pub fn viewer_count() -> Result<Self, CodecError> {
        Self::from_avsc("ViewerCount", VIEWER_COUNT_AVSC, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{EventKind, UserRole};

    fn comment() -> StreamEvent {
        StreamEvent {
            event_id: "0190b6a4-7f3e-7cc1-9a7e-2f4c1b8d9e10".into(),
            stream_id: "final-2026".into(),
            user_id: "u-42".into(),
            kind: EventKind::Comment,
            text: Some("What a catch! 🏏".into()),
            created_ms: 1_790_000_000_123,
            origin: "eu".into(),
            role: UserRole::Moderator,
            retraction: None,
        }
    }

    #[test]
    fn events_written_with_an_earlier_schema_are_read() -> Result<(), CodecError> {
        /// A `StreamEvent` as version 1 of its schema wrote it: no role.
        #[derive(Serialize, serde::Deserialize)]
        struct V1 {
            event_id: String,
            stream_id: String,
            user_id: String,
            kind: EventKind,
            text: Option<String>,
            created_ms: i64,
            origin: String,
        }
        let old = Codec::<V1>::from_avsc("StreamEvent", STREAM_EVENT_HISTORY[0], &[])?;
        let e = comment();
        let bytes = old.encode(&V1 {
            event_id: e.event_id.clone(),
            stream_id: e.stream_id.clone(),
            user_id: e.user_id.clone(),
            kind: e.kind,
            text: e.text.clone(),
            created_ms: e.created_ms,
            origin: e.origin.clone(),
        })?;
        let current = Codec::stream_event()?;
        assert_ne!(bytes[..10], current.header[..], "another fingerprint");
        let read = current.decode(&bytes)?;
        assert_eq!(
            read.role,
            UserRole::Viewer,
            "the default for a missing role"
        );
        assert_eq!(
            read,
            StreamEvent {
                role: UserRole::Viewer,
                ..e
            }
        );
        Ok(())
    }

    #[test]
    fn stream_events_round_trip() -> Result<(), CodecError> {
        let codec = Codec::stream_event()?;
        let like = StreamEvent {
            kind: EventKind::Like,
            text: None,
            ..comment()
        };
        for event in [comment(), like] {
            let bytes = codec.encode(&event)?;
            assert_eq!(&bytes[..2], &[0xC3, 0x01], "single-object marker");
            assert_eq!(codec.decode(&bytes)?, event);
        }
        Ok(())
    }

    #[test]
    fn subscriptions_and_leases_round_trip() -> Result<(), CodecError> {
        let sub = Subscription {
            stream_id: "s1".into(),
            edge_id: "edge-a".into(),
            since_ms: 5,
            positions: vec![crate::records::PartitionPosition {
                topic: "events".into(),
                partition: 3,
                offset: 42,
            }],
        };
        let codec = Codec::subscription()?;
        assert_eq!(codec.decode(&codec.encode(&sub)?)?, sub);

        let lease = EdgeLease {
            edge_id: "edge-a".into(),
            region: "eu".into(),
            push_url: "ws://127.0.0.1:9000/internal/v1/push".into(),
            started_ms: 1,
            expires_ms: 2,
        };
        let codec = Codec::edge_lease()?;
        assert_eq!(codec.decode(&codec.encode(&lease)?)?, lease);
        Ok(())
    }

    #[test]
    fn fingerprints_are_those_of_the_specifications_canonical_form() -> Result<(), CodecError> {
        // CRC-64-AVRO of each schema's Parsing Canonical Form, little-endian, as fastavro and Java compute it.
        let expected = [
            (Codec::stream_event()?.header, "ad74f2b6872035ae"),
            (
                Codec::stream_event()?.earlier[0].0.clone(),
                "4fa3b6bcf4b57082",
            ),
            (
                Codec::stream_event()?.earlier[1].0.clone(),
                "7dd6de22a40923e9",
            ),
            (Codec::subscription()?.header, "39d75a83d41832c1"),
            (Codec::edge_lease()?.header, "11f238377426d931"),
            (Codec::like_total()?.header, "691a637ff2d83bf8"),
        ];
        for (header, fingerprint) in expected {
            let hex: String = header[2..].iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, fingerprint);
        }
        Ok(())
    }

    #[test]
    fn registry_framing_is_written_when_configured_and_both_framings_are_read(
    ) -> Result<(), CodecError> {
        let plain = Codec::stream_event()?;
        let registry = Codec::stream_event()?.with_registry_id(Some(42));
        let framed = registry.encode(&comment())?;
        assert_eq!(&framed[..5], &[0, 0, 0, 0, 42]);
        assert_eq!(registry.decode(&framed)?, comment());
        assert_eq!(registry.decode(&plain.encode(&comment())?)?, comment());
        assert!(matches!(
            plain.decode(&framed),
            Err(CodecError::UnknownSchemaId { id: 42 })
        ));
        let other = Codec::stream_event()?.with_registry_id(Some(7));
        assert!(
            other.decode(&framed).is_err(),
            "another schema id is not taken on trust"
        );
        Ok(())
    }

    #[test]
    fn truncated_payloads_are_errors() -> Result<(), CodecError> {
        let codec = Codec::stream_event()?;
        let bytes = codec.encode(&comment())?;
        for cut in 0..bytes.len() {
            assert!(
                codec.decode(&bytes[..cut]).is_err(),
                "a payload cut at {cut} of {} bytes decoded",
                bytes.len()
            );
        }
        Ok(())
    }

    #[test]
    fn foreign_payloads_are_errors() -> Result<(), CodecError> {
        let events = Codec::stream_event()?;
        let leases = Codec::edge_lease()?;
        let lease = EdgeLease {
            edge_id: "e".into(),
            region: "r".into(),
            push_url: "u".into(),
            started_ms: 0,
            expires_ms: 0,
        };
        let lease_bytes = leases.encode(&lease)?;
        assert!(matches!(
            events.decode(&lease_bytes),
            Err(CodecError::ForeignPayload { .. })
        ));
        assert!(events.decode(br#"{"event_id":"x"}"#).is_err());
        // The right header followed by garbage must not decode either.
        let mut forged = events.encode(&comment())?[..10].to_vec();
        forged.extend_from_slice(&[0xff; 32]);
        assert!(events.decode(&forged).is_err());
        let mut padded = events.encode(&comment())?;
        padded.push(0);
        assert!(matches!(
            events.decode(&padded),
            Err(CodecError::TrailingBytes { trailing: 1, .. })
        ));
        Ok(())
    }
}

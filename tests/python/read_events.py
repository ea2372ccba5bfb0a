#!/usr/bin/env python3
"""Read StreamEvents from a Chorus `events` topic the way an analytics consumer would.

Uses nothing from Chorus but the schema files in schemas/avro and the decoding documented in
schemas/README.md: a value is either Avro single-object encoded (C3 01, the writer schema's 8-byte
CRC-64-AVRO fingerprint little-endian, then the binary datum) or Confluent-framed (00, a 4-byte big-endian
schema id, then the datum). The writer schema is looked up by fingerprint among StreamEvent.avsc and every
version in history/StreamEvent/, and resolved to the current StreamEvent.avsc (Avro schema resolution).

    read_events.py --bootstrap HOST:PORT --topic TOPIC --count N --timeout SECONDS [--schemas DIR]
    read_events.py --self-test [--schemas DIR]

Consumes TOPIC from the beginning in a fresh consumer group (nothing committed) and prints the first N
records, one JSON object per line: key, partition, offset, headers, timestamp_ms and every field of the
StreamEvent. Exit status: 0 ok, 1 fewer than N records within the timeout or a Kafka error, 2 bad usage,
3 a record that breaks the contract (unknown framing, wrong fingerprint, not a StreamEvent).
"""

import argparse
import io
import json
import struct
import sys
import time
import uuid
from pathlib import Path

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

SINGLE_OBJECT_MARKER = b"\xc3\x01"
SINGLE_OBJECT_HEADER_LEN = 10  # marker + 8-byte fingerprint
CONFLUENT_MAGIC = b"\x00"
CONFLUENT_HEADER_LEN = 5  # magic + 4-byte schema id
DEFAULT_SCHEMAS = Path(__file__).resolve().parent.parent.parent / "schemas" / "avro"


class ContractError(Exception):
    """A record that a reader relying only on the documented contract cannot accept."""


def strip_logical_types(schema):
    """The schema without logicalType annotations: the binary encoding is the same, and fastavro then
    returns timestamp-millis as the plain long (milliseconds) instead of a datetime."""
    if isinstance(schema, dict):
        return {k: strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [strip_logical_types(s) for s in schema]
    return schema


def schema_fingerprint(raw):
    """The 8 bytes of the single-object header that name schema `raw` (parsed JSON)."""
    # The Parsing Canonical Form drops logicalType (and doc, defaults, aliases), so a timestamp-millis long
    # is plain "long" in it, as in the fingerprint Chorus writes.
    pcf = to_parsing_canonical_form(parse_schema(raw))
    # fastavro returns the hex of the fingerprint's 8 bytes in little-endian order, which is exactly the
    # byte sequence of the single-object header (checked by --self-test against a known answer).
    return bytes.fromhex(fingerprint(pcf, "CRC-64-AVRO"))


class StreamEventDecoder:
    def __init__(self, schemas_dir):
        schemas_dir = Path(schemas_dir)
        self.raw = raw = json.loads((schemas_dir / "StreamEvent.avsc").read_text(encoding="utf-8"))
        # The reader schema. Stripping logicalType does not change the encoding or the fingerprint.
        self.schema = parse_schema(strip_logical_types(raw))
        self.field_names = [f["name"] for f in raw["fields"]]
        self.fingerprint = schema_fingerprint(raw)
        # Writer schemas by fingerprint: the current one and every committed version.
        self.writers = {self.fingerprint: self.schema}
        for path in sorted((schemas_dir / "history" / "StreamEvent").glob("*.avsc")):
            self.add_writer(json.loads(path.read_text(encoding="utf-8")))

    def add_writer(self, raw):
        """Accepts values written with schema `raw` (parsed JSON), resolved to the reader schema."""
        self.writers.setdefault(schema_fingerprint(raw), parse_schema(strip_logical_types(raw)))

    def header(self):
        return SINGLE_OBJECT_MARKER + self.fingerprint

    def decode(self, value):
        """Returns the StreamEvent in `value` as a dict; raises ContractError for anything else."""
        if value is None:
            raise ContractError("null value (tombstone) in an events topic")
        if value[:2] == SINGLE_OBJECT_MARKER:
            if len(value) < SINGLE_OBJECT_HEADER_LEN:
                raise ContractError(f"single-object value of {len(value)} bytes is shorter than its header")
            found = value[2:SINGLE_OBJECT_HEADER_LEN]
            writer = self.writers.get(found)
            if writer is None:
                known = ", ".join(fp.hex() for fp in self.writers)
                raise ContractError(
                    f"unknown schema fingerprint {found.hex()}: no StreamEvent version has it (known: {known}; "
                    "CRC-64-AVRO of the Parsing Canonical Form, little-endian)"
                )
            datum = value[SINGLE_OBJECT_HEADER_LEN:]
        elif value[:1] == CONFLUENT_MAGIC:
            if len(value) < CONFLUENT_HEADER_LEN:
                raise ContractError(f"Confluent-framed value of {len(value)} bytes is shorter than its header")
            # The schema id names a registry entry; without a registry, decode with StreamEvent.avsc.
            writer = self.schema
            datum = value[CONFLUENT_HEADER_LEN:]
        else:
            raise ContractError(
                f"unknown framing: value starts with {value[:2].hex() or 'nothing'}, expected c301 "
                "(Avro single-object) or 00 (Confluent)"
            )
        buf = io.BytesIO(datum)
        try:
            record = schemaless_reader(buf, writer, self.schema)
        except Exception as e:  # truncated or garbage datum
            raise ContractError(f"datum is not a StreamEvent: {type(e).__name__}: {e}") from e
        if buf.tell() != len(datum):
            raise ContractError(f"{len(datum) - buf.tell()} trailing bytes after a complete StreamEvent")
        return record


def to_str(b):
    return None if b is None else b.decode("utf-8", errors="replace")


def output_line(msg, event, field_names):
    out = {
        "key": to_str(msg.key()),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "headers": {k: to_str(v) for k, v in (msg.headers() or [])},
        "timestamp_ms": msg.timestamp()[1],
    }
    for name in field_names:
        out[name] = event.get(name)
    return json.dumps(out, ensure_ascii=False)


def consume(args, decoder):
    from confluent_kafka import Consumer, KafkaError

    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"chorus-read-events-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            # Some Kafka-compatible brokers (Tansu) hold the first JoinGroup for the whole rebalance timeout,
            # which is max.poll.interval.ms (5 minutes by default); this reader polls continuously anyway.
            "session.timeout.ms": 6000,
            "max.poll.interval.ms": 10000,
            "log_level": 3,
        }
    )
    consumer.subscribe([args.topic])
    transient = (
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._PARTITION_EOF,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
    )
    seen = 0
    deadline = time.monotonic() + args.timeout
    try:
        while seen < args.count:
            left = deadline - time.monotonic()
            if left <= 0:
                print(
                    f"read_events: only {seen} of {args.count} records arrived from {args.topic} "
                    f"within {args.timeout}s",
                    file=sys.stderr,
                )
                return 1
            msg = consumer.poll(min(left, 1.0))
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                # The topic may not exist yet, or the broker may be unreachable for a moment: keep trying until
                # the deadline. Anything else (authorization, bad configuration) ends the run.
                if err.fatal() or not (err.retriable() or err.code() in transient):
                    print(f"read_events: kafka error: {err}", file=sys.stderr)
                    return 1
                continue
            try:
                event = decoder.decode(msg.value())
            except ContractError as e:
                print(
                    f"read_events: {msg.topic()}[{msg.partition()}]@{msg.offset()}: {e}",
                    file=sys.stderr,
                )
                return 3
            print(output_line(msg, event, decoder.field_names), flush=True)
            seen += 1
        return 0
    finally:
        consumer.close()


def check(condition, what):
    if not condition:
        raise SystemExit(f"read_events: self-test failed: {what}")


def self_test(decoder):
    # Known answer from the Avro Rust implementation's documentation: CRC-64-AVRO("hello world") is
    # 0x285541d0a65b3360, whose little-endian bytes are 60 33 5b a6 d0 41 55 28. If fastavro ever returned
    # another byte order, every fingerprint check above would be wrong.
    check(fingerprint("hello world", "CRC-64-AVRO") == "60335ba6d0415528", "fastavro fingerprint byte order")
    check(decoder.header()[:2] == b"\xc3\x01" and len(decoder.header()) == 10, "single-object header")
    # The fingerprint Chorus writes for StreamEvent.avsc (schemas/README.md); changes with the schema.
    print(f"StreamEvent.avsc fingerprint: {decoder.fingerprint.hex()}")

    samples = [
        {
            "event_id": "0190b6a4-7f3e-7cc1-9a7e-2f4c1b8d9e10",
            "stream_id": "final-2026",
            "user_id": "u-42",
            "kind": "COMMENT",
            "text": "What a catch! \U0001f3cf",
            "created_ms": 1_790_000_000_123,
            "origin": "eu",
        },
        {
            "event_id": "0190b6a4-7f3e-7cc1-9a7e-2f4c1b8d9e11",
            "stream_id": "final-2026",
            "user_id": "u-43",
            "kind": "LIKE",
            "text": None,
            "created_ms": 1_790_000_000_124,
            "origin": "us",
        },
    ]
    for event in samples:
        buf = io.BytesIO()
        schemaless_writer(buf, decoder.schema, event)
        datum = buf.getvalue()
        single_object = decoder.header() + datum
        confluent = CONFLUENT_MAGIC + struct.pack(">I", 42) + datum
        for value in (single_object, confluent):
            decoded = decoder.decode(value)
            check(decoded == event, f"round trip of {value[:1].hex()}-framed value: {decoded} != {event}")

        # Everything that breaks the contract is refused, never half-decoded.
        wrong_fp = SINGLE_OBJECT_MARKER + bytes(8) + datum
        for bad in (wrong_fp, b"{}", b"", single_object + b"\x00", None) + tuple(
            single_object[:cut] for cut in range(len(single_object))
        ):
            try:
                decoder.decode(bad)
            except ContractError:
                continue
            check(False, f"accepted a bad value: {bad!r}")

    # A value written with another version (here: one without `text`, which the reader has with a null
    # default) is found by its fingerprint and resolved to the current schema.
    older = {**decoder.raw, "fields": [f for f in decoder.raw["fields"] if f["name"] != "text"]}
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(older), {k: v for k, v in samples[0].items() if k != "text"})
    value = SINGLE_OBJECT_MARKER + schema_fingerprint(older) + buf.getvalue()
    try:
        decoder.decode(value)
        check(False, "accepted a version it was not given")
    except ContractError:
        pass
    decoder.add_writer(older)
    check(decoder.decode(value) == {**samples[0], "text": None}, "resolution of an older version")
    print("self-test ok")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers, HOST:PORT")
    parser.add_argument("--topic", help="topic to read, e.g. events or <prefix>events")
    parser.add_argument("--count", type=int, help="number of records to read")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for them (default 30)")
    parser.add_argument(
        "--schemas", default=str(DEFAULT_SCHEMAS), help="directory of the .avsc files and their history/"
    )
    parser.add_argument("--self-test", action="store_true", help="check the decoding without a broker")
    args = parser.parse_args()

    decoder = StreamEventDecoder(args.schemas)
    if args.self_test:
        return self_test(decoder)
    if not args.bootstrap or not args.topic or args.count is None:
        parser.error("--bootstrap, --topic and --count are required (or --self-test)")
    if args.count < 1 or args.timeout <= 0:
        parser.error("--count must be at least 1 and --timeout positive")
    return consume(args, decoder)


if __name__ == "__main__":
    sys.exit(main())

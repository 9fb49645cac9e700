//! Data packets on the data channels: LiveKit text streams out (header, chunks, trailer;
//! uncompressed) and in (reassembled), and user packets in. No I/O.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use livekit_protocol as proto;
use prost::Message;
use proto::data_stream;

use super::events::RoomEvent;

/// The content of one stream chunk at most (what the official SDKs use).
const CHUNK_BYTES: usize = 15_000;
/// The MIME type of text streams.
const TEXT_MIME: &str = "text/plain";
/// Incoming streams kept open at once; beyond this the oldest is dropped (a sender that never
/// closes its streams must not grow memory without bound).
const MAX_OPEN_STREAMS: usize = 64;

/// A fresh stream id: unique within the process and, with the clock, across processes.
pub(super) fn new_stream_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}-{:x}-{count:x}", std::process::id())
}

/// Milliseconds since the Unix epoch (the stream header's timestamp).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The reliable-channel packets of a whole text stream: header, chunks, trailer. With a
/// `sender`, the packets name that participant as theirs (LiveKit's convention for a
/// transcription of another participant's speech: an agent may send it on their behalf,
/// and the server keeps the header's identity).
pub(super) fn text_stream_packets(
    stream_id: &str,
    topic: &str,
    text: &str,
    attributes: HashMap<String, String>,
    sender: Option<&str>,
) -> Vec<proto::DataPacket> {
    let header = data_stream::Header {
        stream_id: stream_id.to_owned(),
        timestamp: now_ms(),
        topic: topic.to_owned(),
        mime_type: TEXT_MIME.to_owned(),
        total_length: Some(text.len() as u64),
        attributes,
        content_header: Some(data_stream::header::ContentHeader::TextHeader(
            data_stream::TextHeader::default(),
        )),
        ..Default::default()
    };
    let mut packets = vec![reliable(proto::data_packet::Value::StreamHeader(header))];
    for (index, chunk) in utf8_chunks(text, CHUNK_BYTES).enumerate() {
        packets.push(reliable(proto::data_packet::Value::StreamChunk(
            data_stream::Chunk {
                stream_id: stream_id.to_owned(),
                chunk_index: index as u64,
                content: chunk.as_bytes().to_vec(),
                ..Default::default()
            },
        )));
    }
    packets.push(reliable(proto::data_packet::Value::StreamTrailer(
        data_stream::Trailer {
            stream_id: stream_id.to_owned(),
            ..Default::default()
        },
    )));
    if let Some(sender) = sender {
        for packet in &mut packets {
            packet.participant_identity = sender.to_owned();
        }
    }
    packets
}

/// A packet for the reliable channel (the deprecated `kind` field defaults to reliable).
fn reliable(value: proto::data_packet::Value) -> proto::DataPacket {
    proto::DataPacket {
        value: Some(value),
        ..Default::default()
    }
}

/// Splits `text` into pieces of at most `max` bytes without cutting a character.
fn utf8_chunks(text: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(max);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        // A single character longer than `max` bytes (never, with max >= 4) still advances.
        if end == 0 {
            end = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

/// A text stream being received.
struct OpenStream {
    identity: String,
    topic: String,
    attributes: HashMap<String, String>,
    chunks: Vec<(u64, Vec<u8>)>,
}

/// Turns incoming data packets into room events: user packets at once, text streams when
/// their trailer arrives.
#[derive(Default)]
pub(super) struct DataReceiver {
    open: HashMap<String, OpenStream>,
    order: Vec<String>,
}

impl DataReceiver {
    /// Decodes one data-channel message; returns the event it completes, if any.
    pub(super) fn receive(&mut self, bytes: &[u8]) -> Option<RoomEvent> {
        let packet = match proto::DataPacket::decode(bytes) {
            Ok(packet) => packet,
            Err(err) => {
                tracing::debug!(%err, "undecodable data packet");
                return None;
            }
        };
        let identity = packet.participant_identity;
        match packet.value? {
            proto::data_packet::Value::User(user) => Some(RoomEvent::DataReceived {
                identity: (!identity.is_empty()).then_some(identity),
                topic: user.topic.unwrap_or_default(),
                payload: user.payload,
            }),
            proto::data_packet::Value::StreamHeader(header) => self.open(identity, header),
            proto::data_packet::Value::StreamChunk(chunk) => {
                if let Some(stream) = self.open.get_mut(&chunk.stream_id) {
                    stream.chunks.push((chunk.chunk_index, chunk.content));
                }
                None
            }
            proto::data_packet::Value::StreamTrailer(trailer) => self.close(trailer),
            proto::data_packet::Value::SipDtmf(dtmf) => Some(RoomEvent::DtmfReceived {
                identity: (!identity.is_empty()).then_some(identity),
                key: dtmf_key(&dtmf)?,
            }),
            _ => None,
        }
    }

    fn open(&mut self, identity: String, header: data_stream::Header) -> Option<RoomEvent> {
        let is_text = matches!(
            header.content_header,
            Some(data_stream::header::ContentHeader::TextHeader(_))
        );
        if !is_text || header.compression != data_stream::CompressionType::None as i32 {
            return None;
        }
        let stream = OpenStream {
            identity,
            topic: header.topic,
            attributes: header.attributes,
            chunks: Vec::new(),
        };
        // A header may carry the whole (small) stream inline, with no chunks or trailer.
        if let Some(content) = header.inline_content {
            return Some(text_event(stream, content));
        }
        if self.order.len() >= MAX_OPEN_STREAMS {
            let oldest = self.order.remove(0);
            self.open.remove(&oldest);
        }
        self.order.push(header.stream_id.clone());
        self.open.insert(header.stream_id, stream);
        None
    }

    fn close(&mut self, trailer: data_stream::Trailer) -> Option<RoomEvent> {
        let mut stream = self.open.remove(&trailer.stream_id)?;
        self.order.retain(|id| *id != trailer.stream_id);
        stream.chunks.sort_by_key(|(index, _)| *index);
        let content = std::mem::take(&mut stream.chunks)
            .into_iter()
            .flat_map(|(_, bytes)| bytes)
            .collect();
        stream.attributes.extend(trailer.attributes);
        Some(text_event(stream, content))
    }
}

/// The key of a `SipDTMF` packet: its `digit`, or failing that its RFC 4733 event code
/// (0-9 the digits, 10 `*`, 11 `#`, 12-15 `A`-`D`).
fn dtmf_key(dtmf: &proto::SipDtmf) -> Option<char> {
    const KEYS: [char; 16] = [
        '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
    ];
    let from_digit = dtmf
        .digit
        .trim()
        .chars()
        .next()
        .map(|c| c.to_ascii_uppercase())
        .filter(|c| KEYS.contains(c));
    from_digit.or_else(|| KEYS.get(usize::try_from(dtmf.code).ok()?).copied())
}

fn text_event(stream: OpenStream, content: Vec<u8>) -> RoomEvent {
    RoomEvent::TextReceived {
        identity: stream.identity,
        topic: stream.topic,
        text: String::from_utf8_lossy(&content).into_owned(),
        attributes: stream.attributes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(packets: Vec<proto::DataPacket>) -> Vec<RoomEvent> {
        let mut receiver = DataReceiver::default();
        packets
            .into_iter()
            .filter_map(|mut p| {
                p.participant_identity = "agent".into();
                receiver.receive(&p.encode_to_vec())
            })
            .collect()
    }

    #[test]
    fn a_text_stream_is_header_chunks_trailer() {
        let attrs = HashMap::from([("lk.transcription_final".to_owned(), "true".to_owned())]);
        let packets = text_stream_packets("s1", "lk.transcription", "Hello.", attrs.clone(), None);
        assert_eq!(packets.len(), 3);
        assert!(matches!(
            packets[0].value,
            Some(proto::data_packet::Value::StreamHeader(ref h))
                if h.topic == "lk.transcription" && h.mime_type == "text/plain"
                    && h.total_length == Some(6) && h.attributes == attrs
        ));
        assert_eq!(
            roundtrip(packets),
            vec![RoomEvent::TextReceived {
                identity: "agent".into(),
                topic: "lk.transcription".into(),
                text: "Hello.".into(),
                attributes: attrs,
            }]
        );
    }

    #[test]
    fn a_stream_sent_on_behalf_of_another_participant_names_them() {
        let packets = text_stream_packets(
            "s3",
            "lk.transcription",
            "Hi.",
            HashMap::new(),
            Some("caller"),
        );
        assert!(packets.iter().all(|p| p.participant_identity == "caller"));
    }

    #[test]
    fn long_text_is_chunked_on_character_boundaries() {
        let text = "é".repeat(CHUNK_BYTES);
        let packets = text_stream_packets("s2", "t", &text, HashMap::new(), None);
        assert_eq!(packets.len(), 2 + 2);
        match &roundtrip(packets)[..] {
            [RoomEvent::TextReceived { text: got, .. }] => assert_eq!(*got, text),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(utf8_chunks("aé", 2).collect::<Vec<_>>(), vec!["a", "é"]);
    }

    #[test]
    fn user_packets_are_delivered_at_once() {
        let packet = proto::DataPacket {
            participant_identity: "caller".into(),
            value: Some(proto::data_packet::Value::User(proto::UserPacket {
                payload: b"hi".to_vec(),
                topic: Some("chat".into()),
                ..Default::default()
            })),
            ..Default::default()
        };
        let mut receiver = DataReceiver::default();
        assert_eq!(
            receiver.receive(&packet.encode_to_vec()),
            Some(RoomEvent::DataReceived {
                identity: Some("caller".into()),
                topic: "chat".into(),
                payload: b"hi".to_vec(),
            })
        );
        assert_eq!(receiver.receive(b"\xff\xff"), None);
    }

    #[test]
    fn sip_dtmf_packets_are_key_presses() {
        let packet = |code: u32, digit: &str| proto::DataPacket {
            participant_identity: "sip_+15550142".into(),
            value: Some(proto::data_packet::Value::SipDtmf(proto::SipDtmf {
                code,
                digit: digit.into(),
            })),
            ..Default::default()
        };
        let mut receiver = DataReceiver::default();
        assert_eq!(
            receiver.receive(&packet(1, "1").encode_to_vec()),
            Some(RoomEvent::DtmfReceived {
                identity: Some("sip_+15550142".into()),
                key: '1',
            })
        );
        let mut key = |p: proto::DataPacket| match receiver.receive(&p.encode_to_vec()) {
            Some(RoomEvent::DtmfReceived { key, .. }) => Some(key),
            _ => None,
        };
        assert_eq!(key(packet(11, "")), Some('#'));
        assert_eq!(key(packet(10, "*")), Some('*'));
        assert_eq!(key(packet(99, "")), None);
    }

    #[test]
    fn stream_ids_differ() {
        assert_ne!(new_stream_id(), new_stream_id());
    }
}

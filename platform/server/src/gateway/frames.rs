//! Encoding of gateway frames on the hot path.
//!
//! Queue entries are stored as the encoded *content* of a `Delivery` (its `envelope` or
//! `receipt` field, without `seq`). Because protobuf fields may come in any order, a pushed
//! `ServerFrame{delivery: Delivery{seq, ..}}` is the frame key, a length, the `seq` field and
//! the stored bytes, concatenated, with no decoding or copying of the ciphertext.

use bytes::{BufMut, Bytes, BytesMut};
use courier_protocol::v1::{Delivery, Envelope, Receipt, delivery};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

/// Field number of `ServerFrame.delivery`.
const SERVER_FRAME_DELIVERY: u32 = 12;
/// Field number of `Delivery.seq`.
const DELIVERY_SEQ: u32 = 1;

/// The stored form of a queued envelope.
pub fn envelope_payload(envelope: Envelope) -> Bytes {
    content_payload(delivery::Content::Envelope(envelope))
}

/// The stored form of a queued receipt.
pub fn receipt_payload(receipt: Receipt) -> Bytes {
    content_payload(delivery::Content::Receipt(receipt))
}

fn content_payload(content: delivery::Content) -> Bytes {
    Bytes::from(
        Delivery {
            seq: 0,
            content: Some(content),
        }
        .encode_to_vec(),
    )
}

/// A whole `ServerFrame` carrying the delivery of a stored entry at `seq`.
pub fn delivery_frame(seq: u64, payload: &[u8]) -> Bytes {
    let delivery_len = key_len(DELIVERY_SEQ) + encoded_len_varint(seq) + payload.len();
    let mut buf = BytesMut::with_capacity(
        key_len(SERVER_FRAME_DELIVERY) + encoded_len_varint(delivery_len as u64) + delivery_len,
    );
    encode_key(SERVER_FRAME_DELIVERY, WireType::LengthDelimited, &mut buf);
    encode_varint(delivery_len as u64, &mut buf);
    encode_key(DELIVERY_SEQ, WireType::Varint, &mut buf);
    encode_varint(seq, &mut buf);
    buf.put_slice(payload);
    buf.freeze()
}

/// Decodes a stored payload (on the slow path: draining a queue after a reconnect).
pub fn decode_payload(payload: &[u8]) -> Result<delivery::Content, String> {
    Delivery::decode(payload)
        .map_err(|e| e.to_string())?
        .content
        .ok_or_else(|| "queued entry without content".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_protocol::v1::{CiphertextType, ServerFrame, server_frame};

    #[test]
    fn delivery_frame_decodes_as_a_server_frame() {
        let envelope = Envelope {
            sender_user: "u".into(),
            sender_device: 2,
            client_message_id: "m1".into(),
            timestamp_ms: 5,
            server_timestamp_ms: 6,
            r#type: CiphertextType::Message as i32,
            ciphertext: vec![7; 300],
        };
        let payload = envelope_payload(envelope.clone());
        let frame = ServerFrame::decode(delivery_frame(u64::MAX - 1, &payload)).unwrap();
        let Some(server_frame::Body::Delivery(delivery)) = frame.body else {
            panic!("not a delivery: {frame:?}");
        };
        assert_eq!(delivery.seq, u64::MAX - 1);
        assert_eq!(
            delivery.content,
            Some(delivery::Content::Envelope(envelope))
        );
    }

    #[test]
    fn payloads_decode_back() {
        let receipt = Receipt {
            r#type: 1,
            from_user: "x".into(),
            from_device: 1,
            client_message_ids: vec!["a".into()],
            timestamp_ms: 1,
            group_id: String::new(),
        };
        let decoded = decode_payload(&receipt_payload(receipt.clone())).unwrap();
        assert_eq!(decoded, delivery::Content::Receipt(receipt));
        assert!(decode_payload(&[0xff, 0xff]).is_err());
    }
}

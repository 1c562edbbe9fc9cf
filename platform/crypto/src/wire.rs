//! Byte-level encoding shared by the message formats: a bounds-checked reader and the
//! layouts of the pairwise messages. The layouts are documented in [`crate::session`].
//!
//! All integers are big-endian. Every format starts with [`WIRE_VERSION`].

use crate::error::CryptoError;
use crate::keys::PublicIdentity;
use crate::primitives::TAG_LEN;

/// The version byte that opens every message this crate produces.
pub const WIRE_VERSION: u8 = 1;

/// Length of a ratchet message's version byte plus header (authenticated as associated data).
pub(crate) const RATCHET_HEADER_LEN: usize = 1 + 32 + 4 + 4;

/// A bounds-checked cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// Reads the version byte and rejects any version but [`WIRE_VERSION`].
    pub(crate) fn version(&mut self) -> Result<(), CryptoError> {
        match self.u8()? {
            WIRE_VERSION => Ok(()),
            other => Err(CryptoError::UnsupportedVersion(other)),
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CryptoError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, CryptoError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], CryptoError> {
        let (head, tail) = self
            .bytes
            .split_first_chunk::<N>()
            .ok_or(CryptoError::Malformed("truncated"))?;
        self.bytes = tail;
        Ok(*head)
    }

    /// Everything not read yet.
    pub(crate) fn rest(self) -> &'a [u8] {
        self.bytes
    }

    /// Fails unless everything was read.
    pub(crate) fn finish(self) -> Result<(), CryptoError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(CryptoError::Malformed("trailing bytes"))
        }
    }
}

/// The Double Ratchet header: the sender's current ratchet public key, the length of its
/// previous sending chain, and this message's number in the current chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RatchetHeader {
    pub(crate) ratchet_key: [u8; 32],
    pub(crate) previous_chain_length: u32,
    pub(crate) message_number: u32,
}

impl RatchetHeader {
    /// Version byte followed by the header: the exact bytes that are authenticated.
    pub(crate) fn encode(&self) -> [u8; RATCHET_HEADER_LEN] {
        let mut out = [0u8; RATCHET_HEADER_LEN];
        out[0] = WIRE_VERSION;
        out[1..33].copy_from_slice(&self.ratchet_key);
        out[33..37].copy_from_slice(&self.previous_chain_length.to_be_bytes());
        out[37..41].copy_from_slice(&self.message_number.to_be_bytes());
        out
    }
}

/// A parsed ratchet (MESSAGE) message borrowing its ciphertext.
pub(crate) struct RatchetMessage<'a> {
    pub(crate) header: RatchetHeader,
    /// AES-256-GCM ciphertext followed by its 16-byte tag.
    pub(crate) ciphertext: &'a [u8],
}

impl<'a> RatchetMessage<'a> {
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, CryptoError> {
        let mut reader = Reader::new(bytes);
        reader.version()?;
        let header = RatchetHeader {
            ratchet_key: reader.array()?,
            previous_chain_length: reader.u32()?,
            message_number: reader.u32()?,
        };
        let ciphertext = reader.rest();
        if ciphertext.len() < TAG_LEN {
            return Err(CryptoError::Malformed("truncated"));
        }
        Ok(Self { header, ciphertext })
    }
}

/// The X3DH part of a PREKEY message: who starts the session and with which keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct PreKeyHeader {
    pub(crate) identity: PublicIdentity,
    pub(crate) base_key: [u8; 32],
    pub(crate) signed_prekey_id: u32,
    pub(crate) one_time_prekey_id: Option<u32>,
}

impl PreKeyHeader {
    /// Encodes the header followed by an already encoded ratchet message.
    pub(crate) fn encode_with(&self, ratchet_message: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 64 + 32 + 4 + 5 + ratchet_message.len());
        out.push(WIRE_VERSION);
        out.extend_from_slice(&self.identity.encode());
        out.extend_from_slice(&self.base_key);
        out.extend_from_slice(&self.signed_prekey_id.to_be_bytes());
        match self.one_time_prekey_id {
            Some(id) => {
                out.push(1);
                out.extend_from_slice(&id.to_be_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(ratchet_message);
        out
    }

    /// Parses a PREKEY message into its header and the embedded ratchet message bytes.
    pub(crate) fn parse(bytes: &[u8]) -> Result<(Self, &[u8]), CryptoError> {
        let mut reader = Reader::new(bytes);
        reader.version()?;
        let identity = PublicIdentity::decode(&reader.array()?);
        let base_key = reader.array()?;
        let signed_prekey_id = reader.u32()?;
        let one_time_prekey_id = match reader.u8()? {
            0 => None,
            1 => Some(reader.u32()?),
            _ => return Err(CryptoError::Malformed("bad one-time prekey flag")),
        };
        let header = Self {
            identity,
            base_key,
            signed_prekey_id,
            one_time_prekey_id,
        };
        Ok((header, reader.rest()))
    }
}

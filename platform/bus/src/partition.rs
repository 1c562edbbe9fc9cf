//! Shard partitions and the key → partition mapping.

/// A shard partition number, `0..partitions`.
pub type Partition = u32;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Stable across processes, versions and languages: FNV-1a 64 of the key bytes, modulo count.
///
/// A count of 0 is treated as 1 (everything maps to partition 0).
pub fn partition_for(key: &[u8], partitions: u32) -> Partition {
    let hash = key.iter().fold(FNV_OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    });
    let partition = hash % u64::from(partitions.max(1));
    // The remainder is below a u32 count.
    partition as Partition
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_fnv1a_64_vectors() {
        // Reference values of FNV-1a 64 (the FNV test suite): "" and "a" and "foobar".
        assert_eq!(
            partition_for(b"", u32::MAX),
            (0xcbf29ce484222325u64 % u64::from(u32::MAX)) as u32
        );
        assert_eq!(
            partition_for(b"a", u32::MAX),
            (0xaf63dc4c8601ec8cu64 % u64::from(u32::MAX)) as u32
        );
        assert_eq!(
            partition_for(b"foobar", u32::MAX),
            (0x85944171f73967e8u64 % u64::from(u32::MAX)) as u32
        );
    }

    #[test]
    fn stays_in_range_and_spreads() {
        let mut counts = [0u32; 8];
        for n in 0..8000 {
            let partition = partition_for(format!("user-{n}").as_bytes(), 8);
            counts[partition as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(partition_for(b"x", 0), 0);
    }
}

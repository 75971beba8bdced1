//! Which bytes changed between two copy-on-write clones of one volume file,
//! from their physical layouts alone (pure; the layouts come from
//! `shared::reflink::extents`).
//!
//! The base is the clone kept from the last snapshot the archive stored;
//! the new snapshot is a clone of the volume now. While the base exists,
//! every block it shares with the volume is copy-on-write, so a write to
//! the volume moves that offset to a new physical block. A byte is
//! therefore unchanged exactly when both clones map its offset to the same
//! physical byte (or both have a hole there). Anything the layout cannot
//! vouch for (compressed or inline extents that differ, offsets past the
//! base's end) counts as changed: a map may flag too much, never too little.

use crate::shared::change_map::ChangeMap;
use crate::shared::reflink::PhysicalExtent;
use crate::shared::segment::SegmentGeometry;

/// Where one offset of a clone lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Hole,
    /// `physical - logical` of a linear extent: equal deltas at one offset
    /// mean the same physical byte.
    Linear(i128),
    /// An opaque extent, compared whole.
    Opaque(PhysicalExtent),
}

fn place(e: Option<&PhysicalExtent>) -> Place {
    match e {
        None => Place::Hole,
        Some(e) if e.is_linear() => Place::Linear(i128::from(e.physical) - i128::from(e.logical)),
        Some(e) => Place::Opaque(*e),
    }
}

/// A cursor over sorted extents: the extent covering `at`, and where the
/// next change of place is.
struct Cursor<'a> {
    extents: &'a [PhysicalExtent],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn at(&mut self, pos: u64) -> (Option<&'a PhysicalExtent>, u64) {
        while self.i < self.extents.len() && self.extents[self.i].end() <= pos {
            self.i += 1;
        }
        match self.extents.get(self.i) {
            Some(e) if e.logical <= pos => (Some(e), e.end()),
            Some(e) => (None, e.logical),
            None => (None, u64::MAX),
        }
    }
}

/// The byte ranges `[start, end)` of a `new_len`-byte new clone that may
/// differ from the `base_len`-byte base. Extents must be sorted by logical
/// offset and not overlap (as FIEMAP returns them).
pub fn changed_ranges(base: &[PhysicalExtent], base_len: u64, new: &[PhysicalExtent], new_len: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut push = |s: u64, e: u64| {
        if s >= e {
            return;
        }
        match out.last_mut() {
            Some(last) if last.1 == s => last.1 = e,
            _ => out.push((s, e)),
        }
    };
    let common = base_len.min(new_len);
    let (mut b, mut n) = (Cursor { extents: base, i: 0 }, Cursor { extents: new, i: 0 });
    let mut pos = 0u64;
    while pos < common {
        let (be, bnext) = b.at(pos);
        let (ne, nnext) = n.at(pos);
        let next = bnext.min(nnext).min(common);
        let same = match (place(be), place(ne)) {
            (Place::Hole, Place::Hole) => true,
            (Place::Linear(x), Place::Linear(y)) => x == y,
            (Place::Opaque(x), Place::Opaque(y)) => {
                x.logical == y.logical && x.physical == y.physical && x.length == y.length
            }
            _ => false,
        };
        if !same {
            push(pos, next);
        }
        pos = next;
    }
    push(common, new_len);
    out
}

/// The change map of a `volume_size`-byte volume flagging every segment
/// the ranges touch.
pub fn map_of(ranges: &[(u64, u64)], words: usize) -> ChangeMap {
    let mut map = ChangeMap::new(words);
    for &(s, e) in ranges {
        map.set_range(SegmentGeometry::segments_touched(s, e - s));
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::reflink::{EXTENT_ENCODED, EXTENT_LAST};

    fn e(logical: u64, physical: u64, length: u64) -> PhysicalExtent {
        PhysicalExtent { logical, physical, length, flags: 0 }
    }

    const K: u64 = 4096;

    #[test]
    fn layouts_compared_offset_by_offset() {
        let base = [e(0, 1000 * K, 100 * K)];
        // (case, new layout, new length, expected ranges)
        type Case = (&'static str, Vec<PhysicalExtent>, u64, Vec<(u64, u64)>);
        let cases: Vec<Case> = vec![
            ("identical", vec![e(0, 1000 * K, 100 * K)], 100 * K, vec![]),
            (
                "one block rewritten in the middle (the extent split in three)",
                vec![e(0, 1000 * K, 10 * K), e(10 * K, 5000 * K, K), e(11 * K, 1011 * K, 89 * K)],
                100 * K,
                vec![(10 * K, 11 * K)],
            ),
            ("everything moved", vec![e(0, 7000 * K, 100 * K)], 100 * K, vec![(0, 100 * K)]),
            (
                "the volume grew: the tail is new",
                vec![e(0, 1000 * K, 100 * K), e(100 * K, 9000 * K, 20 * K)],
                120 * K,
                vec![(100 * K, 120 * K)],
            ),
            ("shrunk: nothing to read", vec![e(0, 1000 * K, 50 * K)], 50 * K, vec![]),
            (
                "punched into a hole",
                vec![e(0, 1000 * K, 40 * K), e(60 * K, 1060 * K, 40 * K)],
                100 * K,
                vec![(40 * K, 60 * K)],
            ),
            (
                "same physical run at another offset is not the same byte",
                vec![e(0, 1001 * K, 100 * K)],
                100 * K,
                vec![(0, 100 * K)],
            ),
        ];
        for (name, new, len, want) in cases {
            assert_eq!(changed_ranges(&base, 100 * K, &new, len), want, "{name}");
        }
    }

    #[test]
    fn holes_and_opaque_extents() {
        // Both sparse: holes match holes.
        assert_eq!(changed_ranges(&[], 64 * K, &[], 64 * K), vec![]);
        // Data written into a hole of the base.
        assert_eq!(changed_ranges(&[], 64 * K, &[e(8 * K, 50 * K, 4 * K)], 64 * K), vec![(8 * K, 12 * K)]);
        // A compressed extent shared whole is unchanged; one that differs
        // in any way is changed whole.
        let c = PhysicalExtent { logical: 0, physical: 77 * K, length: 128 * K, flags: EXTENT_ENCODED | EXTENT_LAST };
        assert_eq!(changed_ranges(&[c], 128 * K, &[c], 128 * K), vec![]);
        let c2 = PhysicalExtent { physical: 78 * K, ..c };
        assert_eq!(changed_ranges(&[c], 128 * K, &[c2], 128 * K), vec![(0, 128 * K)]);
        // Compressed versus linear: changed.
        assert_eq!(changed_ranges(&[c], 128 * K, &[e(0, 77 * K, 128 * K)], 128 * K), vec![(0, 128 * K)]);
        // No base at all (length 0): everything.
        assert_eq!(changed_ranges(&[], 0, &[e(0, 1, K)], 3 * K), vec![(0, 3 * K)]);
    }

    #[test]
    fn ranges_become_segments() {
        let m = map_of(&[(100, 200), (10 * K, 11 * K), (16384 * 3 - 1, 16384 * 3 + 1)], 1);
        let set: Vec<u64> = (0..32).filter(|s| m.is_set(*s)).collect();
        assert_eq!(set, vec![0, 2, 3]);
    }
}

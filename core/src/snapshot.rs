//! State that is saved to flash, with its layout defined once.
//!
//! A type that is saved lists its fields, in order, in one `const fn
//! field(&mut self, i)`: field `i` as a name and a [`Field`] (a mutable
//! view of the value and how it is encoded). That list is the whole
//! definition: writing goes through it ([`Field::get`]), reading goes
//! through it ([`Field::set`]), the encoded length is counted from it at
//! compile time ([`layout!`]), and `docs/FORMAT.md`'s table of a
//! checkpoint is checked against it by a test. Nothing else lists the
//! fields, so they cannot drift apart.
//!
//! The encoding is the fields' bytes back to back, integers
//! little-endian. Checks that need the whole value (a probability in
//! range, a length that fits) are made once everything has been read,
//! by the type that owns the fields.

use crate::apply::Job;
use crate::codec::Params;

/// One field of a saved type: where the value lives, and how it is
/// encoded.
pub(crate) enum Field<'a> {
    /// One byte.
    U8(&'a mut u8),
    /// One byte: 1 for `true`, 0 for `false` (anything else reads as
    /// `false`).
    Flag(&'a mut bool),
    /// Two bytes, little-endian.
    U16(&'a mut u16),
    /// Four bytes, little-endian.
    U32(&'a mut u32),
    /// The bytes as they are.
    Bytes(&'a mut [u8]),
    /// Codec probabilities: two bytes each, little-endian.
    Probs(&'a mut [u16]),
    /// The codec parameter byte ([`Params::to_byte`]).
    Params(&'a mut Params),
    /// A pending decoder job: one byte (0 none, 1 copy, 2 literal run) and
    /// its length (four bytes).
    Job(&'a mut Job),
}

/// The longest field that is not [`Field::Bytes`] or [`Field::Probs`].
pub(crate) const SMALL: usize = 5;

impl Field<'_> {
    /// Bytes of the field's encoding.
    pub(crate) const fn len(&self) -> usize {
        match self {
            Field::U8(_) | Field::Flag(_) | Field::Params(_) => 1,
            Field::U16(_) => 2,
            Field::U32(_) => 4,
            Field::Job(_) => SMALL,
            Field::Bytes(b) => b.len(),
            Field::Probs(p) => 2 * p.len(),
        }
    }

    /// The encoding of a small field (not `Bytes` or `Probs`), in
    /// `[..len]`.
    fn small(&self) -> [u8; SMALL] {
        let mut b = [0u8; SMALL];
        match self {
            Field::U8(v) => b[0] = **v,
            Field::Flag(v) => b[0] = **v as u8,
            Field::Params(p) => b[0] = p.to_byte(),
            Field::U16(v) => b[..2].copy_from_slice(&v.to_le_bytes()),
            Field::U32(v) => b[..4].copy_from_slice(&v.to_le_bytes()),
            Field::Job(j) => {
                let (tag, n) = match **j {
                    Job::None => (0u8, 0u32),
                    Job::Copy(n) => (1, n),
                    Job::Lit(n) => (2, n),
                };
                b[0] = tag;
                b[1..].copy_from_slice(&n.to_le_bytes());
            }
            Field::Bytes(_) | Field::Probs(_) => {}
        }
        b
    }

    /// Copies the field's encoding from byte `at` on into `out`, as much
    /// as fits; the number of bytes copied.
    pub(crate) fn get(&self, at: usize, out: &mut [u8]) -> usize {
        let n = self.len().saturating_sub(at).min(out.len());
        match self {
            Field::Bytes(b) => out[..n].copy_from_slice(&b[at..at + n]),
            Field::Probs(p) => {
                for (i, o) in out[..n].iter_mut().enumerate() {
                    let j = at + i;
                    *o = p[j / 2].to_le_bytes()[j % 2];
                }
            }
            _ => out[..n].copy_from_slice(&self.small()[at..at + n]),
        }
        n
    }

    /// Takes bytes `at .. at + b.len()` of the field's encoding (`b` must
    /// fit in it). A small field takes its whole encoding at once (`at` 0,
    /// `b` of [`Field::len`] bytes). `false` if the bytes are no value the
    /// field can hold (a parameter byte or job no writer makes).
    pub(crate) fn set(&mut self, at: usize, b: &[u8]) -> bool {
        let u32_of = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        match self {
            Field::Bytes(v) => v[at..at + b.len()].copy_from_slice(b),
            Field::Probs(p) => {
                for (i, &x) in b.iter().enumerate() {
                    let j = at + i;
                    let mut w = p[j / 2].to_le_bytes();
                    w[j % 2] = x;
                    p[j / 2] = u16::from_le_bytes(w);
                }
            }
            Field::U8(v) => **v = b[0],
            Field::Flag(v) => **v = b[0] == 1,
            Field::U16(v) => **v = u16::from_le_bytes([b[0], b[1]]),
            Field::U32(v) => **v = u32_of(b),
            Field::Params(p) => match Params::from_byte(b[0]) {
                Some(x) => **p = x,
                None => return false,
            },
            Field::Job(j) => {
                **j = match (b[0], u32_of(&b[1..])) {
                    (0, _) => Job::None,
                    (1, n) if n > 0 => Job::Copy(n),
                    (2, n) if n > 0 => Job::Lit(n),
                    _ => return false,
                }
            }
        }
        true
    }

    /// Whether the field is read in pieces of any size ([`Field::set`]).
    pub(crate) const fn in_pieces(&self) -> bool {
        matches!(self, Field::Bytes(_) | Field::Probs(_))
    }
}

/// A saved thing as the state area's record writer and reader see it:
/// its fields, in order, each with its name ([`Field`]), `None` past the
/// last.
pub(crate) trait Fields {
    fn field(&mut self, i: usize) -> Option<(&'static str, Field<'_>)>;
}

/// [`Fields`] for types whose list is their inherent `const fn field`.
macro_rules! impl_fields {
    ($($t:ty),*) => {$(
        impl $crate::snapshot::Fields for $t {
            fn field(&mut self, i: usize) -> Option<(&'static str, $crate::snapshot::Field<'_>)> {
                <$t>::field(self, i)
            }
        }
    )*};
}
pub(crate) use impl_fields;

/// Writes the encoding of `s` into `out` (as much as fits); the bytes of
/// the whole encoding.
#[cfg(test)]
pub(crate) fn save(s: &mut dyn Fields, out: &mut [u8]) -> usize {
    let (mut i, mut at) = (0, 0);
    while let Some((_, f)) = s.field(i) {
        if let Some(rest) = out.get_mut(at..) {
            f.get(0, rest);
        }
        at += f.len();
        i += 1;
    }
    at
}

/// Reads `s` back from `bytes`, a field at a time; `false` if `bytes` is
/// short or a field refuses its bytes.
#[cfg(test)]
pub(crate) fn load(s: &mut dyn Fields, bytes: &[u8]) -> bool {
    let (mut i, mut at) = (0, 0);
    while let Some((_, mut f)) = s.field(i) {
        let n = f.len();
        let Some(b) = bytes.get(at..at + n) else {
            return false;
        };
        if !f.set(0, b) {
            return false;
        }
        at += n;
        i += 1;
    }
    true
}

/// `(fields, bytes)` of a type's layout, counted at compile time from its
/// `field` list, on the value `$init`.
macro_rules! layout {
    ($init:expr) => {{
        let mut s = $init;
        let (mut i, mut n) = (0usize, 0usize);
        while let Some((_, f)) = s.field(i) {
            n += f.len();
            i += 1;
        }
        // Some states own a digest with a destructor, which a constant
        // cannot run (nothing to free here).
        let _ = core::mem::ManuallyDrop::new(s);
        (i, n)
    }};
}
pub(crate) use layout;

/// Field `$i` of a list: each entry is either one field,
/// `"name" => Field::..(..)`, or all the fields of a part that has its
/// own list, `.. Type: place`. Evaluates to the field, `None` past the
/// last.
macro_rules! fields {
    ($i:expr; $($rest:tt)*) => {{
        let mut k: usize = $i;
        $crate::snapshot::fields!(@ k; $($rest)*)
    }};
    (@ $k:ident; $name:literal => $f:expr, $($rest:tt)*) => {{
        if $k == 0 {
            // The names are for the table in `docs/FORMAT.md`, which a
            // test checks; a device build does not carry them.
            #[cfg(test)]
            let name = $name;
            #[cfg(not(test))]
            let name = "";
            return Some((name, $f));
        }
        $k -= 1;
        $crate::snapshot::fields!(@ $k; $($rest)*)
    }};
    (@ $k:ident; .. $t:ty: $part:expr, $($rest:tt)*) => {{
        if $k < <$t>::FIELDS {
            return $part.field($k);
        }
        $k -= <$t>::FIELDS;
        $crate::snapshot::fields!(@ $k; $($rest)*)
    }};
    (@ $k:ident;) => {{
        let _ = $k;
        None
    }};
}
pub(crate) use fields;

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(mut f: Field<'_>, mut g: Field<'_>) {
        let mut enc = [0u8; 64];
        let n = f.len();
        assert_eq!(f.get(0, &mut enc[..n]), n);
        // Small fields whole; the others in pieces of one byte.
        if g.in_pieces() {
            for i in 0..n {
                assert!(g.set(i, &enc[i..i + 1]));
            }
        } else {
            assert!(g.set(0, &enc[..n]));
        }
        let mut back = [0u8; 64];
        g.get(0, &mut back[..n]);
        assert_eq!(enc[..n], back[..n]);
        let _ = f.set(0, &enc[..n]);
    }

    #[test]
    fn fields_round_trip_in_pieces() {
        let (mut a, mut b) = (0xBEEF_u16, 0);
        round_trip(Field::U16(&mut a), Field::U16(&mut b));
        assert_eq!(b, 0xBEEF);
        let (mut a, mut b) = ([1u16, 2047, 300], [0u16; 3]);
        round_trip(Field::Probs(&mut a), Field::Probs(&mut b));
        assert_eq!(a, b);
        let (mut a, mut b) = (Job::Lit(70_000), Job::None);
        round_trip(Field::Job(&mut a), Field::Job(&mut b));
        assert_eq!(b, Job::Lit(70_000));
        let (mut a, mut b) = (true, false);
        round_trip(Field::Flag(&mut a), Field::Flag(&mut b));
        assert!(b);
    }

    #[test]
    fn values_no_writer_makes_are_refused() {
        let mut j = Job::None;
        assert!(
            !Field::Job(&mut j).set(0, &[1, 0, 0, 0, 0]),
            "a copy of 0 bytes"
        );
        assert!(
            !Field::Job(&mut j).set(0, &[3, 1, 0, 0, 0]),
            "an unknown job"
        );
        let mut p = Params::default();
        assert!(!Field::Params(&mut p).set(0, &[0x05]), "lc + lp = 2");
    }

    #[test]
    fn get_from_an_offset_copies_what_fits() {
        let mut v = 0x0403_0201_u32;
        let f = Field::U32(&mut v);
        let mut out = [0u8; 2];
        assert_eq!(f.get(1, &mut out), 2);
        assert_eq!(out, [2, 3]);
        assert_eq!(f.get(3, &mut out), 1);
        assert_eq!(f.get(4, &mut out), 0);
    }
}

//! [`LabelSet`]: a compact map of label names to values in one allocation.
//!
//! Every stored alert holds two label sets, and a `BTreeMap<String, String>` spends a 640-byte
//! node plus one allocation per name and value on five labels. Here the whole set is one string:
//! the label count, then each name and value preceded by its length. Lengths are written as
//! characters (14 bits each, below the surrogate range), so the buffer stays a valid `str` and is
//! read without `unsafe`; a length under 128 takes one byte. Lookups scan, which at label-set
//! sizes is as fast as a tree.

use std::cmp::Ordering;
use std::fmt;

/// A set of labels sorted by name, each name once (Go's `model.LabelSet`).
///
/// Built from pairs in any order (a later pair for the same name wins, as inserting into a map);
/// changes (`insert`, `remove`, `retain`) rebuild the set, which is cheap at label-set sizes.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct LabelSet {
    /// Empty for no labels; otherwise `count, (len name, name, len value, value)*`.
    packed: Box<str>,
}

/// Bits of a length carried by one character; the next bit says another character follows.
const LEN_BITS: u32 = 14;
const LEN_MASK: usize = (1 << LEN_BITS) - 1;
const MORE: u32 = 1 << LEN_BITS;

/// The characters that encode the length `n`, least significant 14 bits first.
fn len_chars(mut n: usize) -> impl Iterator<Item = char> {
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let low = (n & LEN_MASK) as u32;
        n >>= LEN_BITS;
        done = n == 0;
        let c = if done { low } else { low | MORE };
        // At most 0x7fff: always a valid scalar value.
        char::from_u32(c)
    })
}

fn push_len(out: &mut String, n: usize) {
    match u8::try_from(n) {
        Ok(short @ 0..0x80) => out.push(char::from(short)),
        _ => out.extend(len_chars(n)),
    }
}

/// Returns how many bytes `push_len` writes for `n`.
fn len_bytes(n: usize) -> usize {
    len_chars(n).map(char::len_utf8).sum()
}

/// Reads the length written by `push_len` at `pos`; returns it and the position after it.
/// Decodes the 1–3 byte UTF-8 of characters up to 0x7fff by hand: this runs for every label
/// looked at, and a length under 128 is one byte.
#[inline]
fn read_len(b: &[u8], pos: usize) -> (usize, usize) {
    match b[pos] {
        b0 @ 0..0x80 => (usize::from(b0), pos + 1),
        _ => read_long_len(b, pos),
    }
}

fn read_long_len(b: &[u8], mut pos: usize) -> (usize, usize) {
    let (mut n, mut shift) = (0usize, 0);
    loop {
        let b0 = b[pos];
        let c = if b0 < 0x80 {
            pos += 1;
            u32::from(b0)
        } else if b0 & 0xe0 == 0xc0 {
            pos += 2;
            (u32::from(b0 & 0x1f) << 6) | u32::from(b[pos - 1] & 0x3f)
        } else {
            pos += 3;
            (u32::from(b0 & 0x0f) << 12) | (u32::from(b[pos - 2] & 0x3f) << 6) | u32::from(b[pos - 1] & 0x3f)
        };
        n |= ((c as usize) & LEN_MASK) << shift;
        if c & MORE == 0 {
            return (n, pos);
        }
        shift += LEN_BITS;
    }
}

impl LabelSet {
    /// Returns the empty set (no allocation).
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the number of labels.
    pub fn len(&self) -> usize {
        if self.packed.is_empty() {
            0
        } else {
            read_len(self.packed.as_bytes(), 0).0
        }
    }

    /// Reads the first and last byte of the set's storage and returns them combined: a caller
    /// walking many sets scattered over the heap reads a batch of them this way first, so that
    /// their cache misses overlap instead of stalling one by one.
    pub fn warm(&self) -> u8 {
        let b = self.packed.as_bytes();
        b.first().copied().unwrap_or(0) ^ b.last().copied().unwrap_or(0)
    }

    /// Returns whether the set has no labels.
    pub fn is_empty(&self) -> bool {
        self.packed.is_empty()
    }

    /// Returns the value of `name`.
    #[inline]
    pub fn get(&self, name: &str) -> Option<&str> {
        // Compares bytes and skips values by their lengths; only the match is sliced as `str`.
        let b = self.packed.as_bytes();
        let mut it = self.iter();
        while it.left > 0 {
            it.left -= 1;
            let (name_len, at) = read_len(b, it.pos);
            let (value_len, value_at) = read_len(b, at + name_len);
            match b.get(at..at + name_len)?.cmp(name.as_bytes()) {
                Ordering::Less => {}
                Ordering::Equal => return self.packed.get(value_at..value_at + value_len),
                Ordering::Greater => return None,
            }
            it.pos = value_at + value_len;
        }
        None
    }

    /// Returns whether `name` is set.
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Iterates over `(name, value)` in name order.
    pub fn iter(&self) -> Iter<'_> {
        let (left, pos) = if self.packed.is_empty() {
            (0, 0)
        } else {
            read_len(self.packed.as_bytes(), 0)
        };
        Iter {
            packed: &self.packed,
            pos,
            left,
        }
    }

    /// Iterates over the names in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> {
        self.iter().map(|(n, _)| n)
    }

    /// Iterates over the values in name order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &str> {
        self.iter().map(|(_, v)| v)
    }

    /// Sets `name` to `value`, returning the previous value.
    pub fn insert(&mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Option<String> {
        let (name, value) = (name.as_ref(), value.as_ref());
        let old = self.get(name).map(str::to_string);
        let before = self.iter().filter(|&(n, _)| n < name);
        let after = self.iter().filter(|&(n, _)| n > name);
        let rebuilt = Self::from_sorted(before.chain(std::iter::once((name, value))).chain(after));
        *self = rebuilt;
        old
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let old = self.get(name)?.to_string();
        *self = Self::from_sorted(self.iter().filter(|&(n, _)| n != name));
        Some(old)
    }

    /// Keeps only the labels for which `keep(name, value)` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        // Every posted alert's labels and annotations pass through here, and nearly always all
        // are kept: nothing is allocated until the first label that is not.
        let mut rest = self.iter();
        let kept = rest.by_ref().take_while(|&(n, v)| keep(n, v)).count();
        if kept == self.len() {
            return;
        }
        let rest: Vec<(&str, &str)> = rest.filter(|&(n, v)| keep(n, v)).collect();
        let set = Self::from_sorted(self.iter().take(kept).chain(rest.iter().copied()));
        *self = set;
    }

    /// Builds a set from pairs already sorted by name with no name twice.
    fn from_sorted<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Self {
        let (count, bytes) = pairs.clone().fold((0, 0), |(c, b), (n, v)| {
            (c + 1, b + len_bytes(n.len()) + n.len() + len_bytes(v.len()) + v.len())
        });
        if count == 0 {
            return Self::new();
        }
        let mut packed = String::with_capacity(len_bytes(count) + bytes);
        push_len(&mut packed, count);
        for (n, v) in pairs {
            push_len(&mut packed, n.len());
            packed.push_str(n);
            push_len(&mut packed, v.len());
            packed.push_str(v);
        }
        LabelSet {
            packed: packed.into_boxed_str(),
        }
    }

    /// Builds a set from pairs in any order; of pairs with the same name the last one wins.
    fn from_pairs(pairs: &mut [(&str, &str)]) -> Self {
        let sorted_unique = pairs.windows(2).all(|w| w[0].0 < w[1].0);
        if !sorted_unique {
            // Stable, so equal names keep their input order and the last of each run wins.
            pairs.sort_by(|a, b| a.0.cmp(b.0));
        }
        let n = pairs.len();
        let last_of_run = |i: usize| i + 1 == n || pairs[i].0 != pairs[i + 1].0;
        Self::from_sorted((0..n).filter(|&i| last_of_run(i)).map(|i| pairs[i]))
    }
}

/// Iterator over a [`LabelSet`]'s `(name, value)` pairs in name order.
#[derive(Clone, Debug)]
pub struct Iter<'a> {
    packed: &'a str,
    /// Byte position of the next name's length.
    pos: usize,
    left: usize,
}

impl<'a> Iter<'a> {
    #[inline]
    fn part(&mut self) -> &'a str {
        let (len, at) = read_len(self.packed.as_bytes(), self.pos);
        self.pos = at + len;
        &self.packed[at..at + len]
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let name = self.part();
        Some((name, self.part()))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a LabelSet {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for LabelSet {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let owned: Vec<(K, V)> = iter.into_iter().collect();
        let mut pairs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
        Self::from_pairs(&mut pairs)
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> From<[(K, V); N]> for LabelSet {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Extend<(K, V)> for LabelSet {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        let added: Vec<(K, V)> = iter.into_iter().collect();
        if added.is_empty() {
            return;
        }
        let mut pairs: Vec<(&str, &str)> = self.iter().collect();
        pairs.extend(added.iter().map(|(k, v)| (k.as_ref(), v.as_ref())));
        *self = Self::from_pairs(&mut pairs);
    }
}

/// The value of a name that is set; panics otherwise, as indexing a map does.
impl std::ops::Index<&str> for LabelSet {
    type Output = str;

    fn index(&self, name: &str) -> &str {
        self.get(name).unwrap_or_else(|| panic!("label {name:?} is not set"))
    }
}

/// Orders like a sorted map: pairwise by name then value, a prefix first (`LabelSet.Before`).
impl Ord for LabelSet {
    fn cmp(&self, other: &Self) -> Ordering {
        self.iter().cmp(other.iter())
    }
}

impl PartialOrd for LabelSet {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// A JSON object of strings, in name order.
impl serde::Serialize for LabelSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

/// From a JSON object of strings; names and values are appended to one buffer as they are read
/// (no string per label), then packed, sorted only when they did not arrive sorted.
impl<'de> serde::Deserialize<'de> for LabelSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(SetVisitor)
    }
}

struct SetVisitor;

impl<'de> serde::de::Visitor<'de> for SetVisitor {
    type Value = LabelSet;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of strings to strings")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<LabelSet, A::Error> {
        SCRATCH.with_borrow_mut(|b| {
            // A set left half-built by an earlier error is discarded.
            b.clear();
            while map.next_key_seed(AppendPart { to: b, name: true })?.is_some() {
                map.next_value_seed(AppendPart { to: b, name: false })?;
            }
            Ok(b.finish())
        })
    }
}

thread_local! {
    /// Per-thread builder that decoded label sets are assembled in, then copied out at their
    /// exact size (growing a fresh buffer per set was a fifth of decoding an alert batch).
    static SCRATCH: std::cell::RefCell<LabelSetBuilder> = std::cell::RefCell::new(LabelSetBuilder::new());
}

/// Builds label sets from names and values in the order a decoder reads them, without a string
/// per label: each is written once, in the packed form, into a buffer kept across sets, and the
/// finished set is copied out at its exact size. Sorted input (Prometheus sends it so) is copied
/// once; anything else is re-packed through `from_pairs` (a later value for a name wins).
#[derive(Debug)]
pub struct LabelSetBuilder {
    /// A one-byte placeholder for the count, then each name and value with its length.
    buf: String,
    count: usize,
    sorted: bool,
    /// Where the last name is in `buf`.
    prev: std::ops::Range<usize>,
}

impl Default for LabelSetBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LabelSetBuilder {
    /// Returns a builder with no labels pushed.
    pub fn new() -> Self {
        LabelSetBuilder {
            buf: String::from("\0"),
            count: 0,
            sorted: true,
            prev: 0..0,
        }
    }

    /// Discards what was pushed since the last [`finish`](Self::finish).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.buf.push('\0');
        self.count = 0;
        self.sorted = true;
        self.prev = 0..0;
    }

    /// Appends a label's name; its value must follow.
    pub fn push_name(&mut self, name: &str) {
        push_len(&mut self.buf, name.len());
        let at = self.buf.len();
        self.buf.push_str(name);
        let name = at..self.buf.len();
        self.sorted &= self.count == 0 || self.buf[self.prev.clone()] < self.buf[name.clone()];
        self.prev = name;
    }

    /// Appends the value of the name pushed last.
    pub fn push_value(&mut self, value: &str) {
        push_len(&mut self.buf, value.len());
        self.buf.push_str(value);
        self.count += 1;
    }

    /// Returns the set of the labels pushed since the last call, and starts the next one.
    pub fn finish(&mut self) -> LabelSet {
        if self.count == 0 {
            self.clear();
            return LabelSet::new();
        }
        let body = &self.buf[1..];
        let mut packed = String::with_capacity(len_bytes(self.count) + body.len());
        push_len(&mut packed, self.count);
        packed.push_str(body);
        let set = LabelSet {
            packed: packed.into_boxed_str(),
        };
        let sorted = self.sorted;
        self.clear();
        if sorted {
            return set;
        }
        let mut pairs: Vec<(&str, &str)> = set.iter().collect();
        LabelSet::from_pairs(&mut pairs)
    }
}

/// Appends a deserialised name or value to a builder instead of allocating it.
struct AppendPart<'a> {
    to: &'a mut LabelSetBuilder,
    name: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for AppendPart<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for AppendPart<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        if self.name {
            self.to.push_name(v);
        } else {
            self.to.push_value(v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn map(set: &LabelSet) -> BTreeMap<String, String> {
        set.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn later_pair_wins_and_names_sort() {
        let s: LabelSet = [("b", "1"), ("a", "2"), ("b", "3")].into();
        assert_eq!(s.iter().collect::<Vec<_>>(), [("a", "2"), ("b", "3")]);
        assert_eq!(s.get("b"), Some("3"));
        assert_eq!(s.get("c"), None);
        assert_eq!(format!("{s:?}"), r#"{"a": "2", "b": "3"}"#);
    }

    #[test]
    fn long_names_and_values_keep_their_lengths() {
        for n in [127, 128, 2047, 2048, 16383, 16384, 70_000] {
            let (name, value) = ("n".repeat(n % 300 + 1), "é".repeat(n));
            let s: LabelSet = [("a", "1"), (name.as_str(), value.as_str()), ("zz", "")].into();
            let want = [("a", "1"), (name.as_str(), value.as_str()), ("zz", "")];
            assert_eq!(s.iter().collect::<Vec<_>>(), want);
            assert_eq!(s.len(), 3);
            assert_eq!(s.get(&name), Some(value.as_str()));
            let mut counted = String::new();
            push_len(&mut counted, n);
            assert_eq!(len_bytes(n), counted.len());
            assert_eq!(read_len(counted.as_bytes(), 0), (n, counted.len()));
        }
    }

    #[test]
    fn the_builder_packs_any_count_in_any_order() {
        let mut b = LabelSetBuilder::new();
        for count in [0, 1, 127, 128, 300] {
            let pairs: Vec<(String, String)> = (0..count).map(|i| (format!("l{i:03}"), "v".repeat(i))).collect();
            for reversed in [false, true] {
                let order: Vec<&(String, String)> = if reversed {
                    pairs.iter().rev().collect()
                } else {
                    pairs.iter().collect()
                };
                for (n, v) in &order {
                    b.push_name(n);
                    b.push_value(v);
                }
                let built = b.finish();
                assert_eq!(built, pairs.iter().cloned().collect::<LabelSet>(), "{count} labels");
                assert_eq!(built.len(), count);
            }
        }
        // A half-built set is dropped by `clear`.
        b.push_name("x");
        b.clear();
        b.push_name("a");
        b.push_value("1");
        assert_eq!(b.finish(), LabelSet::from([("a", "1")]));
    }

    #[test]
    fn json_round_trip_sorts_and_keeps_the_last_duplicate() {
        let s: LabelSet = serde_json::from_str(r#"{"z":"1","a":"é\n","z":"2","":""}"#).unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"":"","a":"é\n","z":"2"}"#);
        let err = serde_json::from_str::<LabelSet>(r#"{"a":1}"#).unwrap_err().to_string();
        assert!(err.contains("invalid type: integer `1`, expected a string"), "{err}");
    }

    proptest::proptest! {
        /// Every operation agrees with the same operations on a `BTreeMap`.
        #[test]
        fn behaves_like_a_sorted_map(
            pairs in proptest::collection::vec(("[a-d]{0,2}", "[x-zé]{0,3}"), 0..8),
            extra in ("[a-d]{0,2}", "[x-z]{0,2}"),
        ) {
            let mut set: LabelSet = pairs.iter().cloned().collect();
            let mut want: BTreeMap<String, String> = pairs.iter().cloned().collect();
            proptest::prop_assert_eq!(map(&set), want.clone());
            proptest::prop_assert_eq!(set.len(), want.len());
            let json = serde_json::to_string(&set).unwrap();
            proptest::prop_assert_eq!(&json, &serde_json::to_string(&want).unwrap());
            proptest::prop_assert_eq!(serde_json::from_str::<LabelSet>(&json).unwrap(), set.clone());
            // As posted: any order, names repeated; the last value of a name wins.
            let posted: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), serde_json::to_string(v).unwrap()))
                .collect();
            let posted = format!("{{{}}}", posted.join(","));
            proptest::prop_assert_eq!(serde_json::from_str::<LabelSet>(&posted).unwrap(), set.clone());
            for n in want.keys() {
                proptest::prop_assert_eq!(set.get(n), want.get(n).map(String::as_str));
            }
            proptest::prop_assert_eq!(set.insert(&extra.0, &extra.1), want.insert(extra.0.clone(), extra.1.clone()));
            proptest::prop_assert_eq!(map(&set), want.clone());
            let other: LabelSet = want.iter().rev().collect();
            proptest::prop_assert_eq!(&other, &set);
            proptest::prop_assert_eq!(set.remove("a"), want.remove("a"));
            set.retain(|_, v| !v.contains('y'));
            want.retain(|_, v| !v.contains('y'));
            proptest::prop_assert_eq!(map(&set), want);
        }

        /// Sets order like the sorted maps they hold.
        #[test]
        fn orders_like_a_sorted_map(
            a in proptest::collection::btree_map("[a-c]{1}", "[x-z]{0,2}", 0..4),
            b in proptest::collection::btree_map("[a-c]{1}", "[x-z]{0,2}", 0..4),
        ) {
            let (sa, sb): (LabelSet, LabelSet) = (a.iter().collect(), b.iter().collect());
            proptest::prop_assert_eq!(sa.cmp(&sb), a.cmp(&b));
        }
    }
}

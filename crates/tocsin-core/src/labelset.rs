//! [`LabelSet`]: a compact, immutable-in-place map of label names to values.
//!
//! Every stored alert holds two label sets, and a `BTreeMap<String, String>` spends a 640-byte
//! node plus one allocation per name and value on five labels. Here all names and values live
//! in one string, with one offset array: two allocations per set, read by binary search.

use std::cmp::Ordering;
use std::fmt;

/// A set of labels sorted by name, each name once (Go's `model.LabelSet`).
///
/// Built from pairs in any order (a later pair for the same name wins, as inserting into a map);
/// changes (`insert`, `remove`, `retain`) rebuild the set, which is cheap at label-set sizes.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct LabelSet {
    /// Names and values concatenated: name 0, value 0, name 1, value 1, …
    text: Box<str>,
    /// End offset in `text` of each name and value, two per label.
    ends: Box<[u32]>,
}

impl LabelSet {
    /// Returns the empty set (no allocation).
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the number of labels.
    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    /// Returns whether the set has no labels.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn part(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    fn name(&self, i: usize) -> &str {
        self.part(2 * i)
    }

    fn value(&self, i: usize) -> &str {
        self.part(2 * i + 1)
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.name(mid).cmp(name) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// Returns the value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.position(name).ok().map(|i| self.value(i))
    }

    /// Returns whether `name` is set.
    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// Iterates over `(name, value)` in name order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            set: self,
            front: 0,
            back: self.len(),
        }
    }

    /// Iterates over the names in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator {
        self.iter().map(|(n, _)| n)
    }

    /// Iterates over the values in name order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator {
        self.iter().map(|(_, v)| v)
    }

    /// Sets `name` to `value`, returning the previous value.
    pub fn insert(&mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Option<String> {
        let (name, value) = (name.as_ref(), value.as_ref());
        let (old, rebuilt) = match self.position(name) {
            Ok(i) => {
                let old = self.value(i).to_string();
                let pairs = self
                    .iter()
                    .enumerate()
                    .map(|(j, p)| if j == i { (name, value) } else { p });
                (Some(old), Self::from_sorted(pairs))
            }
            Err(i) => {
                let pairs = self
                    .iter()
                    .take(i)
                    .chain(std::iter::once((name, value)))
                    .chain(self.iter().skip(i));
                (None, Self::from_sorted(pairs))
            }
        };
        *self = rebuilt;
        old
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self.position(name).ok()?;
        let old = self.value(i).to_string();
        *self = Self::from_sorted(self.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, p)| p));
        Some(old)
    }

    /// Keeps only the labels for which `keep(name, value)` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        let keeps: Vec<bool> = self.iter().map(|(n, v)| keep(n, v)).collect();
        if keeps.iter().all(|&k| k) {
            return;
        }
        *self = Self::from_sorted(self.iter().zip(keeps).filter(|(_, k)| *k).map(|(p, _)| p));
    }

    /// Builds a set from pairs already sorted by name with no name twice.
    fn from_sorted<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Self {
        let (count, bytes) = pairs
            .clone()
            .fold((0, 0), |(c, b), (n, v)| (c + 1, b + n.len() + v.len()));
        let mut text = String::with_capacity(bytes);
        let mut ends = Vec::with_capacity(2 * count);
        for (n, v) in pairs {
            text.push_str(n);
            ends.push(offset(text.len()));
            text.push_str(v);
            ends.push(offset(text.len()));
        }
        LabelSet {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
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

fn offset(len: usize) -> u32 {
    // Label text over 4 GiB cannot arrive: request bodies are far smaller.
    u32::try_from(len).expect("label set text under 4 GiB")
}

/// Iterator over a [`LabelSet`]'s `(name, value)` pairs in name order.
#[derive(Clone, Debug)]
pub struct Iter<'a> {
    set: &'a LabelSet,
    front: usize,
    back: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.front == self.back {
            return None;
        }
        let i = self.front;
        self.front += 1;
        Some((self.set.name(i), self.set.value(i)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.back - self.front;
        (n, Some(n))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.front == self.back {
            return None;
        }
        self.back -= 1;
        Some((self.set.name(self.back), self.set.value(self.back)))
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
/// (no string per label), and sorted only when they did not arrive sorted.
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
        let mut text = String::new();
        let mut ends: Vec<u32> = Vec::with_capacity(2 * map.size_hint().unwrap_or(8));
        while map.next_key_seed(AppendStr(&mut text))?.is_some() {
            ends.push(offset(text.len()));
            map.next_value_seed(AppendStr(&mut text))?;
            ends.push(offset(text.len()));
        }
        let set = LabelSet {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        };
        let sorted_unique = (1..set.len()).all(|i| set.name(i - 1) < set.name(i));
        if sorted_unique {
            return Ok(set);
        }
        let mut pairs: Vec<(&str, &str)> = set.iter().collect();
        Ok(LabelSet::from_pairs(&mut pairs))
    }
}

/// Appends a deserialised string to a buffer instead of allocating it.
struct AppendStr<'a>(&'a mut String);

impl<'de> serde::de::DeserializeSeed<'de> for AppendStr<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for AppendStr<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push_str(v);
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

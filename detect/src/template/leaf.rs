//! The templates of one tree leaf. A small leaf is scanned whole for each line, as in Drain. Once a
//! leaf holds `INDEX_MIN` templates (many first words beyond `max_children` share the `<*>` child, for
//! instance) it also indexes its templates' words by position, so that a line is compared only with
//! the templates that share enough of its words to pass the similarity threshold: learning `n`
//! templates in one leaf then costs about `n` comparisons rather than `n²/2`
//! (`examples/bench_template.rs`).

use std::collections::HashMap;

use super::mask::is_variable;
// The keys are already hashes; SipHash over them again was most of a lookup.
use super::TreeHash;

/// Templates in a leaf before its words are indexed. With the seeded multiply-rotate hasher a
/// lookup per word of the line is cheaper than comparing a dozen templates: a line among 20
/// distinct templates of one leaf ran at 1.25 M lines per CPU-second scanned and 2.1 M indexed,
/// and every Loghub dataset gained (BENCHMARKS.md); the grouping is the same either way.
pub(crate) const INDEX_MIN: usize = 8;

#[derive(Debug, Default)]
pub(crate) struct Leaf {
    /// Slots of the leaf's templates, oldest first.
    pub(crate) slots: Vec<u32>,
    index: Option<Index>,
}

#[derive(Debug, Default)]
struct Index {
    /// Hash of (position, word) → slots of the templates with that word there. A hash collision only
    /// adds candidates, which are compared in full anyway.
    postings: HashMap<u64, Vec<u32>, TreeHash>,
}

/// The key of a word at a position. A `key=value` word is filed under its `key=` alone, since a
/// template's `key=<*>` takes any value of the key.
fn key(pos: usize, word: &str) -> u64 {
    let word = word.find('=').map_or(word, |eq| &word[..=eq]);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (pos as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for &b in word.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Leaf {
    /// True once the leaf indexes its words.
    pub(crate) fn indexed(&self) -> bool {
        self.index.is_some()
    }

    /// Adds a template. `tokens_of` gives the tokens of any slot of the leaf, to build the index when
    /// the leaf reaches `INDEX_MIN`.
    pub(crate) fn push<'a>(
        &mut self,
        slot: u32,
        tokens: &[Box<str>],
        tokens_of: impl Fn(u32) -> Option<&'a [Box<str>]>,
    ) {
        self.slots.push(slot);
        match &mut self.index {
            Some(index) => index.add(slot, tokens),
            None if self.slots.len() >= INDEX_MIN => {
                let mut index = Index::default();
                for &s in &self.slots {
                    if s == slot {
                        index.add(s, tokens);
                    } else if let Some(t) = tokens_of(s) {
                        index.add(s, t);
                    }
                }
                self.index = Some(index);
            }
            None => {}
        }
    }

    pub(crate) fn remove(&mut self, slot: u32, tokens: &[Box<str>]) {
        self.slots.retain(|&s| s != slot);
        if let Some(index) = &mut self.index {
            for (pos, t) in tokens.iter().enumerate() {
                if !is_variable(t) {
                    index.drop_one(key(pos, t), slot);
                }
            }
        }
    }

    /// The template's word at `pos` became a variable.
    pub(crate) fn word_gone(&mut self, slot: u32, pos: usize, word: &str) {
        if let Some(index) = &mut self.index {
            index.drop_one(key(pos, word), slot);
        }
    }

    /// The templates that have `word` at `pos` (and a few others on a hash collision); `None` when
    /// the leaf is not indexed.
    pub(crate) fn with_word(&self, pos: usize, word: &str) -> Option<&[u32]> {
        let index = self.index.as_ref()?;
        Some(
            index
                .postings
                .get(&key(pos, word))
                .map_or(&[], Vec::as_slice),
        )
    }

    /// Into `out`, every template that shares at least `min_shared` of the `words` (position, word)
    /// of a line, and maybe others; `false` when the leaf is not indexed or `min_shared` is 0, and the
    /// caller must scan `slots`. By pigeonhole, such a template is in at least one of any
    /// `words.len() - min_shared + 1` of the words' lists, so the shortest ones are taken.
    pub(crate) fn sharing<'a>(
        &self,
        words: impl Iterator<Item = (usize, &'a str)>,
        min_shared: usize,
        out: &mut Vec<u32>,
    ) -> bool {
        out.clear();
        let Some(index) = &self.index else {
            return false;
        };
        if min_shared == 0 {
            return false;
        }
        // The words' lists on the stack for a line of up to `STACK` words, the common case, so
        // that a line allocates nothing here; a longer line collects them.
        const STACK: usize = 48;
        let mut stack: [&[u32]; STACK] = [&[]; STACK];
        let mut heap: Vec<&[u32]> = Vec::new();
        let mut n = 0;
        for (pos, w) in words {
            let list = index
                .postings
                .get(&key(pos, w))
                .map_or(&[][..], Vec::as_slice);
            if n < STACK {
                stack[n] = list;
            } else {
                if heap.is_empty() {
                    heap.extend_from_slice(&stack);
                }
                heap.push(list);
            }
            n += 1;
        }
        let lists: &mut [&[u32]] = if n <= STACK {
            &mut stack[..n]
        } else {
            &mut heap
        };
        if lists.len() < min_shared {
            return true;
        }
        let take = lists.len() - min_shared + 1;
        lists.sort_unstable_by_key(|l| l.len());
        for l in &lists[..take] {
            out.extend_from_slice(l);
        }
        out.sort_unstable();
        out.dedup();
        true
    }
}

impl Index {
    fn add(&mut self, slot: u32, tokens: &[Box<str>]) {
        for (pos, t) in tokens.iter().enumerate() {
            if !is_variable(t) {
                self.postings.entry(key(pos, t)).or_default().push(slot);
            }
        }
    }

    fn drop_one(&mut self, k: u64, slot: u32) {
        if let Some(list) = self.postings.get_mut(&k) {
            if let Some(i) = list.iter().position(|&s| s == slot) {
                list.swap_remove(i);
            }
            if list.is_empty() {
                self.postings.remove(&k);
            }
        }
    }
}

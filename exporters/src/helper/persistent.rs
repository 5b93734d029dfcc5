//! The durable `sending_queue` (`storage: file_storage/x`): every item is committed to a `Storage`
//! before `push` returns, deleted only once the stack marks it `done`, and replayed at the next start.
//! Concurrent pushes share one storage transaction (group commit), so an fsync is paid per group of
//! requests rather than per request.
//!
//! Layout in the store: key `q` + item id (u64, big-endian, so key order is queue order); value is a
//! versioned record holding the item's size in sizer units and the item's own `Persist` bytes. An id
//! is an epoch (the top 24 bits, new at every open) and a sequence number (the low 40 bits), so a
//! queue opened while an older one on the same store still runs (a config reload) never reuses a key.

use super::queue::{Persist, Popped, PushError, Queue};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, Notify};
use vigil_core::storage::StorageOp;
use vigil_core::{Storage, StorageError};

const KEY_PREFIX: &[u8] = b"q";
const RECORD_V1: u8 = 1;
/// At most this many writes go into one transaction, so that one commit stays short and a failing
/// group refuses a bounded number of pushes.
const MAX_GROUP: usize = 4096;
/// Items pushed while their decoded form fits under this many encoded bytes stay in memory as well,
/// so the common path pops without a read. Beyond it (a long outage, or a replay after restart) items
/// live only on disk and are read back when popped.
const CACHE_BYTES: usize = 64 << 20;

const SEQ_BITS: u32 = 40;

/// The highest epoch handed out in this process, so that two opens of the same store get different
/// epochs even before either has written a record.
static EPOCH_FLOOR: Mutex<u64> = Mutex::new(0);

fn next_epoch(max_on_disk: Option<u64>) -> u64 {
    let mut floor = vigil_core::lock(&EPOCH_FLOOR);
    let epoch = max_on_disk.map_or(0, |e| e + 1).max(*floor + 1);
    *floor = epoch;
    epoch
}

fn key(id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(KEY_PREFIX.len() + 8);
    k.extend_from_slice(KEY_PREFIX);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn id_of(key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// Version, size (u64, big-endian), then the item.
fn encode_record(size: usize, item: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + item.len());
    v.push(RECORD_V1);
    v.extend_from_slice(&(size as u64).to_be_bytes());
    v.extend_from_slice(item);
    v
}

fn decode_record<T: Persist>(bytes: &[u8]) -> Option<(usize, T)> {
    let (&version, rest) = bytes.split_first()?;
    if version != RECORD_V1 {
        return None;
    }
    let (size, item) = rest.split_first_chunk::<8>()?;
    let size = usize::try_from(u64::from_be_bytes(*size)).ok()?;
    Some((size, T::from_bytes(item)?))
}

/// A storage failure as every waiting push sees it (`StorageError` is not `Clone`).
#[derive(Debug, Clone)]
struct WriteFailure {
    full: bool,
    reason: String,
}

impl From<&StorageError> for WriteFailure {
    fn from(e: &StorageError) -> Self {
        WriteFailure {
            full: matches!(e, StorageError::Full(_)),
            reason: e.to_string(),
        }
    }
}

enum Write {
    /// A new item; the push waits for the answer.
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
        reply: oneshot::Sender<Result<(), WriteFailure>>,
    },
    /// A delivered item; nobody waits.
    Delete(Vec<u8>),
    /// Answers once everything sent before it is committed.
    Flush(oneshot::Sender<()>),
}

/// The group-commit writer: one thread per queue, taking whatever writes arrived while the previous
/// commit ran and committing them in one transaction. No timer is needed: under load the groups grow
/// by themselves, and a lone write commits at once.
fn run_writer(storage: Arc<dyn Storage>, rx: std_mpsc::Receiver<Write>) {
    // Deletes that failed (a full disk) are tried again with the next group rather than forgotten:
    // a forgotten delete would replay a delivered item after a restart.
    let mut deferred_deletes: Vec<Vec<u8>> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(w) => group.push(w),
                Err(_) => break,
            }
        }
        let mut ops: Vec<StorageOp> = deferred_deletes.drain(..).map(StorageOp::Delete).collect();
        let mut replies = Vec::new();
        let mut flushes = Vec::new();
        for w in group {
            match w {
                Write::Set { key, value, reply } => {
                    ops.push(StorageOp::Set(key, value));
                    replies.push(reply);
                }
                Write::Delete(key) => ops.push(StorageOp::Delete(key)),
                Write::Flush(done) => flushes.push(done),
            }
        }
        if !ops.is_empty() {
            let has_sets = !replies.is_empty();
            let deletes: Vec<Vec<u8>> = ops
                .iter()
                .filter_map(|op| match op {
                    StorageOp::Delete(k) => Some(k.clone()),
                    StorageOp::Set(..) => None,
                })
                .collect();
            let result = commit(&storage, ops).map_err(|e| WriteFailure::from(&e));
            if let Err(failure) = &result {
                // The deletes free space, so they matter most on a full disk: try them alone.
                if has_sets && !deletes.is_empty() {
                    let alone = deletes.iter().cloned().map(StorageOp::Delete).collect();
                    if commit(&storage, alone).is_err() {
                        deferred_deletes = deletes;
                    }
                } else if !deletes.is_empty() {
                    deferred_deletes = deletes;
                }
                tracing::warn!(reason = %failure.reason, "sending queue: a storage commit failed");
            }
            for r in replies {
                let _ = r.send(result.clone());
            }
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}

/// A commit; a panic inside the store (redb asserts on some damaged files) is an error, not a crash.
fn commit(storage: &Arc<dyn Storage>, ops: Vec<StorageOp>) -> Result<(), StorageError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| storage.batch(ops))).unwrap_or_else(
        |_| {
            Err(StorageError::Other(
                "the storage panicked during a commit".into(),
            ))
        },
    )
}

struct Entry<T> {
    size: usize,
    /// The item, when it is cached in memory; otherwise it is read from storage on pop.
    item: Option<T>,
    /// Encoded length, counted against `CACHE_BYTES` while `item` is cached.
    cached_bytes: usize,
}

struct State<T> {
    /// Committed and not yet popped, in queue order.
    pending: BTreeMap<u64, Entry<T>>,
    /// Sizer units reserved by pending items and by pushes still being committed.
    used: usize,
    next_id: u64,
    cached_bytes: usize,
    closed: bool,
}

/// The durable queue. Create it with `PersistentQueue::open`, which replays what a previous run left.
pub struct PersistentQueue<T> {
    /// Who owns the queue, for log lines.
    owner: String,
    storage: Arc<dyn Storage>,
    writer: Mutex<Option<std_mpsc::Sender<Write>>>,
    state: Mutex<State<T>>,
    capacity: usize,
    cache_limit: usize,
    not_empty: Notify,
    not_full: Notify,
    corrupt: metrics::Counter,
}

/// What `open` found in storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Replayed {
    /// Items waiting from a previous run.
    pub items: usize,
    /// Records that did not decode and were deleted.
    pub corrupt: usize,
}

impl<T: Persist + Send + 'static> PersistentQueue<T> {
    /// Opens the queue over `storage`, replaying pending items and deleting (and counting in
    /// `vigil_storage_corrupt_records`) records that do not decode. `capacity` is in sizer units;
    /// replayed items count against it even if that overfills the queue, so nothing on disk is dropped
    /// because the configured size shrank.
    pub async fn open(
        storage: Arc<dyn Storage>,
        capacity: usize,
        owner: &str,
    ) -> Result<(Self, Replayed), StorageError> {
        Self::open_with_cache(storage, capacity, owner, CACHE_BYTES).await
    }

    /// `open` with a chosen in-memory cache budget (tests use a tiny one to exercise the disk path).
    pub(crate) async fn open_with_cache(
        storage: Arc<dyn Storage>,
        capacity: usize,
        owner: &str,
        cache_limit: usize,
    ) -> Result<(Self, Replayed), StorageError> {
        let s = Arc::clone(&storage);
        let scanned = tokio::task::spawn_blocking(move || s.scan_prefix(KEY_PREFIX))
            .await
            .unwrap_or_else(|e| {
                Err(StorageError::Other(format!(
                    "reading the queue failed: {e}"
                )))
            })?;
        let corrupt = metrics::counter!("vigil_storage_corrupt_records");
        let mut state = State {
            pending: BTreeMap::new(),
            used: 0,
            next_id: 0,
            cached_bytes: 0,
            closed: false,
        };
        let mut bad_keys = Vec::new();
        let mut max_epoch = None;
        for (k, v) in scanned {
            let Some(id) = id_of(&k) else {
                bad_keys.push(k);
                continue;
            };
            max_epoch = max_epoch.max(Some(id >> SEQ_BITS));
            let Some((size, item)) = decode_record::<T>(&v) else {
                bad_keys.push(k);
                continue;
            };
            let cache = state.cached_bytes + v.len() <= cache_limit;
            state.cached_bytes += if cache { v.len() } else { 0 };
            state.used += size;
            state.pending.insert(
                id,
                Entry {
                    size,
                    item: cache.then_some(item),
                    cached_bytes: if cache { v.len() } else { 0 },
                },
            );
        }
        state.next_id = next_epoch(max_epoch) << SEQ_BITS;
        let replayed = Replayed {
            items: state.pending.len(),
            corrupt: bad_keys.len(),
        };
        if !bad_keys.is_empty() {
            corrupt.increment(bad_keys.len() as u64);
            tracing::error!(
                queue = owner,
                skipped = bad_keys.len(),
                "sending queue: skipped {} corrupt records (deleted; their data is lost)",
                bad_keys.len()
            );
            let s = Arc::clone(&storage);
            let ops = bad_keys.into_iter().map(StorageOp::Delete).collect();
            let deleted = tokio::task::spawn_blocking(move || commit(&s, ops)).await;
            if !matches!(deleted, Ok(Ok(()))) {
                tracing::warn!(
                    queue = owner,
                    "sending queue: corrupt records could not be deleted; they will be skipped again"
                );
            }
        }
        if replayed.items > 0 {
            tracing::info!(
                queue = owner,
                items = replayed.items,
                "sending queue: replaying {} requests left by the previous run",
                replayed.items
            );
        }
        let (tx, rx) = std_mpsc::channel();
        let s = Arc::clone(&storage);
        std::thread::Builder::new()
            .name("vigil-queue-writer".into())
            .spawn(move || run_writer(s, rx))
            .map_err(|e| StorageError::Other(format!("cannot start the queue writer: {e}")))?;
        Ok((
            PersistentQueue {
                owner: owner.to_string(),
                storage,
                writer: Mutex::new(Some(tx)),
                state: Mutex::new(state),
                capacity,
                cache_limit,
                not_empty: Notify::new(),
                not_full: Notify::new(),
                corrupt,
            },
            replayed,
        ))
    }

    fn send(&self, w: Write) -> bool {
        let guard = vigil_core::lock(&self.writer);
        guard.as_ref().is_some_and(|tx| tx.send(w).is_ok())
    }

    /// Reserves room for `size`, waiting for it with `block`. `Err(None)` means full, `Err(Some)`
    /// closed.
    async fn reserve(&self, size: usize, block: bool) -> Result<u64, bool> {
        loop {
            let room = self.not_full.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut st = vigil_core::lock(&self.state);
                if st.closed {
                    return Err(true);
                }
                if st.used + size <= self.capacity {
                    st.used += size;
                    let id = st.next_id;
                    st.next_id += 1;
                    return Ok(id);
                }
                if !block {
                    return Err(false);
                }
            }
            room.await;
        }
    }

    fn release(&self, size: usize) {
        {
            let mut st = vigil_core::lock(&self.state);
            st.used = st.used.saturating_sub(size);
        }
        self.not_full.notify_waiters();
    }

    /// Reads an item that is not cached. `None` when it is gone or corrupt (then it is counted and
    /// deleted).
    async fn load(&self, id: u64) -> Option<T> {
        let s = Arc::clone(&self.storage);
        let k = key(id);
        let read = tokio::task::spawn_blocking(move || s.get(&k)).await;
        let bytes = match read {
            Ok(Ok(Some(b))) => b,
            Ok(Ok(None)) => return None,
            Ok(Err(e)) => {
                tracing::error!(queue = %self.owner, id, error = %e, "sending queue: cannot read a queued request; skipping it");
                self.corrupt.increment(1);
                return None;
            }
            Err(e) => {
                tracing::error!(queue = %self.owner, id, error = %e, "sending queue: reading a queued request failed; skipping it");
                self.corrupt.increment(1);
                return None;
            }
        };
        match decode_record::<T>(&bytes) {
            Some((_, item)) => Some(item),
            None => {
                tracing::error!(queue = %self.owner, id, "sending queue: skipped 1 corrupt record (deleted; its data is lost)");
                self.corrupt.increment(1);
                self.send(Write::Delete(key(id)));
                None
            }
        }
    }
}

#[async_trait]
impl<T: Persist + Send + 'static> Queue<T> for PersistentQueue<T> {
    async fn push(&self, item: T, size: usize, block: bool) -> Result<(), PushError<T>> {
        if size > self.capacity {
            return Err(PushError::TooLarge(item));
        }
        let id = match self.reserve(size, block).await {
            Ok(id) => id,
            Err(true) => return Err(PushError::Closed(item)),
            Err(false) => return Err(PushError::Full(item)),
        };
        let value = encode_record(size, &item.to_bytes());
        let len = value.len();
        let (reply, answer) = oneshot::channel();
        let committed = if self.send(Write::Set {
            key: key(id),
            value,
            reply,
        }) {
            answer.await.unwrap_or_else(|_| {
                Err(WriteFailure {
                    full: false,
                    reason: "the queue writer stopped".into(),
                })
            })
        } else {
            Err(WriteFailure {
                full: false,
                reason: "the queue is closed".into(),
            })
        };
        if let Err(f) = committed {
            self.release(size);
            let reason = if f.full {
                format!("the disk under the sending queue is full: {}", f.reason)
            } else {
                format!(
                    "the sending queue cannot write to its storage: {}",
                    f.reason
                )
            };
            return Err(PushError::Storage(item, reason));
        }
        {
            let mut st = vigil_core::lock(&self.state);
            let cache = st.cached_bytes + len <= self.cache_limit;
            st.cached_bytes += if cache { len } else { 0 };
            st.pending.insert(
                id,
                Entry {
                    size,
                    item: cache.then_some(item),
                    cached_bytes: if cache { len } else { 0 },
                },
            );
        }
        self.not_empty.notify_one();
        Ok(())
    }

    async fn pop(&self) -> Option<Popped<T>> {
        loop {
            let ready = self.not_empty.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            let next = {
                let mut st = vigil_core::lock(&self.state);
                // Once closed, what is left stays on disk for the next start.
                if st.closed {
                    return None;
                }
                match st.pending.pop_first() {
                    Some((id, e)) => {
                        st.used = st.used.saturating_sub(e.size);
                        st.cached_bytes -= e.cached_bytes;
                        Some((id, e, !st.pending.is_empty()))
                    }
                    None => None,
                }
            };
            let Some((id, entry, more)) = next else {
                ready.await;
                continue;
            };
            self.not_full.notify_waiters();
            if more {
                // Pass the baton: another consumer may be waiting for the remaining items.
                self.not_empty.notify_one();
            }
            let item = match entry.item {
                Some(item) => Some(item),
                None => self.load(id).await,
            };
            match item {
                Some(item) => {
                    return Some(Popped {
                        item,
                        size: entry.size,
                        id,
                    })
                }
                None => continue,
            }
        }
    }

    fn done(&self, id: u64) {
        self.send(Write::Delete(key(id)));
    }

    fn close(&self) {
        vigil_core::lock(&self.state).closed = true;
        self.not_empty.notify_waiters();
        self.not_full.notify_waiters();
    }

    async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(Write::Flush(tx)) {
            let _ = rx.await;
        }
    }

    fn is_durable(&self) -> bool {
        true
    }

    fn size(&self) -> usize {
        vigil_core::lock(&self.state).used
    }

    fn capacity(&self) -> usize {
        self.capacity
    }
}

impl<T> Drop for PersistentQueue<T> {
    fn drop(&mut self) {
        // Dropping the sender ends the writer thread once it has committed what is left.
        vigil_core::lock(&self.writer).take();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;
    use vigil_core::storage::KeyValues;

    /// An in-memory `Storage` that counts commits, can be made slow (so groups form) or full.
    #[derive(Default)]
    pub(crate) struct MemStorage {
        pub map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
        pub commits: AtomicUsize,
        pub full: AtomicBool,
        pub slow: AtomicBool,
    }

    impl Storage for MemStorage {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
            Ok(self.map.lock().unwrap().get(key).cloned())
        }
        fn batch(&self, ops: Vec<StorageOp>) -> Result<(), StorageError> {
            if self.slow.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            if self.full.load(Ordering::SeqCst)
                && ops.iter().any(|o| matches!(o, StorageOp::Set(..)))
            {
                return Err(StorageError::Full("no space left on device".into()));
            }
            self.commits.fetch_add(1, Ordering::SeqCst);
            let mut m = self.map.lock().unwrap();
            for op in ops {
                match op {
                    StorageOp::Set(k, v) => {
                        m.insert(k, v);
                    }
                    StorageOp::Delete(k) => {
                        m.remove(&k);
                    }
                }
            }
            Ok(())
        }
        fn scan_prefix(&self, prefix: &[u8]) -> Result<KeyValues, StorageError> {
            let m = self.map.lock().unwrap();
            Ok(m.iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }
    }

    #[derive(Debug, PartialEq)]
    struct Item(String);

    impl Persist for Item {
        fn to_bytes(&self) -> Vec<u8> {
            self.0.as_bytes().to_vec()
        }
        fn from_bytes(bytes: &[u8]) -> Option<Self> {
            String::from_utf8(bytes.to_vec()).ok().map(Item)
        }
    }

    async fn open(s: &Arc<MemStorage>, cap: usize) -> (PersistentQueue<Item>, Replayed) {
        PersistentQueue::open(s.clone() as Arc<dyn Storage>, cap, "otlp/test")
            .await
            .unwrap()
    }

    fn item(s: &str) -> Item {
        Item(s.into())
    }

    #[tokio::test]
    async fn committed_before_push_returns_and_replayed_until_done() {
        let s = Arc::new(MemStorage::default());
        let (q, r) = open(&s, 10).await;
        assert_eq!(r, Replayed::default());
        for n in ["a", "b", "c"] {
            q.push(item(n), 2, false).await.unwrap();
            // Durable before the caller hears Ok.
            assert!(s
                .map
                .lock()
                .unwrap()
                .values()
                .any(|v| v.ends_with(n.as_bytes())));
        }
        assert_eq!(q.size(), 6);
        let a = q.pop().await.unwrap();
        assert_eq!((a.item.0.as_str(), a.size), ("a", 2));
        q.done(a.id);
        let b = q.pop().await.unwrap();
        assert_eq!(b.item, item("b"));
        // `b` is in flight, never marked done: a crash now must replay it, with `c`.
        q.flush().await;
        drop(q);
        let (q, r) = open(&s, 10).await;
        assert_eq!(
            r,
            Replayed {
                items: 2,
                corrupt: 0
            }
        );
        assert_eq!(q.size(), 4);
        assert_eq!(q.pop().await.unwrap().item, item("b"));
        assert_eq!(q.pop().await.unwrap().item, item("c"));
        // New ids never collide with replayed ones, and order is kept.
        q.push(item("d"), 1, false).await.unwrap();
        assert_eq!(q.pop().await.unwrap().item, item("d"));
    }

    #[tokio::test]
    async fn corrupt_records_are_skipped_counted_and_deleted() {
        let s = Arc::new(MemStorage::default());
        let (q, _) = open(&s, 10).await;
        for n in ["good1", "bad", "good2"] {
            q.push(item(n), 1, false).await.unwrap();
        }
        q.flush().await;
        drop(q);
        {
            let mut m = s.map.lock().unwrap();
            let bad = m
                .iter()
                .find(|(_, v)| v.ends_with(b"bad"))
                .unwrap()
                .0
                .clone();
            // A record with an unknown version, one cut short, and a key of the wrong shape.
            m.insert(bad, vec![9, 0, 0]);
            m.insert(b"q-junk".to_vec(), vec![1]);
            let k = key(7);
            m.insert(k, vec![RECORD_V1, 0, 0, 0]);
        }
        let (q, r) = open(&s, 10).await;
        assert_eq!(
            r,
            Replayed {
                items: 2,
                corrupt: 3
            }
        );
        assert_eq!(q.pop().await.unwrap().item, item("good1"));
        assert_eq!(q.pop().await.unwrap().item, item("good2"));
        assert_eq!(
            s.map.lock().unwrap().len(),
            2,
            "corrupt records are deleted"
        );
    }

    #[tokio::test]
    async fn full_disk_refuses_as_storage_error_and_keeps_queued_data() {
        let s = Arc::new(MemStorage::default());
        let (q, _) = open(&s, 10).await;
        q.push(item("kept"), 1, false).await.unwrap();
        s.full.store(true, Ordering::SeqCst);
        match q.push(item("new"), 1, false).await {
            Err(PushError::Storage(i, reason)) => {
                assert_eq!(i, item("new"));
                assert!(reason.contains("full"), "{reason}");
            }
            other => panic!("expected a storage refusal, got {other:?}"),
        }
        assert_eq!(q.size(), 1, "the refused push gives its room back");
        // Deletes still go through on a full disk: they free space.
        let kept = q.pop().await.unwrap();
        q.done(kept.id);
        q.flush().await;
        assert!(s.map.lock().unwrap().is_empty());
        s.full.store(false, Ordering::SeqCst);
        q.push(item("later"), 1, false).await.unwrap();
        assert_eq!(q.pop().await.unwrap().item, item("later"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_pushes_share_commits() {
        let s = Arc::new(MemStorage::default());
        s.slow.store(true, Ordering::SeqCst);
        let (q, _) = open(&s, 1000).await;
        let q = Arc::new(q);
        let pushes: Vec<_> = (0..200)
            .map(|i| {
                let q = q.clone();
                tokio::spawn(async move { q.push(Item(format!("{i}")), 1, false).await.is_ok() })
            })
            .collect();
        for p in pushes {
            assert!(p.await.unwrap());
        }
        let commits = s.commits.load(Ordering::SeqCst);
        assert!(commits < 100, "200 pushes took {commits} commits");
        assert_eq!(q.size(), 200);
    }

    #[tokio::test]
    async fn close_leaves_items_on_disk_and_full_refuses() {
        let s = Arc::new(MemStorage::default());
        let (q, _) = open(&s, 2).await;
        q.push(item("a"), 1, false).await.unwrap();
        q.push(item("b"), 1, false).await.unwrap();
        assert!(matches!(
            q.push(item("c"), 1, false).await,
            Err(PushError::Full(_))
        ));
        assert!(matches!(
            q.push(item("c"), 3, false).await,
            Err(PushError::TooLarge(_))
        ));
        q.close();
        assert!(q.pop().await.is_none());
        assert!(matches!(
            q.push(item("c"), 1, false).await,
            Err(PushError::Closed(_))
        ));
        drop(q);
        let (_, r) = open(&s, 2).await;
        assert_eq!(r.items, 2);
    }

    #[tokio::test]
    async fn uncached_items_are_read_back_and_two_opens_never_collide() {
        let s = Arc::new(MemStorage::default());
        let dyn_s = s.clone() as Arc<dyn Storage>;
        // No cache: every pop reads from storage.
        let (q1, _) = PersistentQueue::<Item>::open_with_cache(dyn_s.clone(), 10, "a", 0)
            .await
            .unwrap();
        let (q2, _) = PersistentQueue::<Item>::open_with_cache(dyn_s, 10, "b", 0)
            .await
            .unwrap();
        q1.push(item("one"), 1, false).await.unwrap();
        q2.push(item("two"), 1, false).await.unwrap();
        assert_eq!(s.map.lock().unwrap().len(), 2, "distinct keys");
        assert_eq!(q1.pop().await.unwrap().item, item("one"));
        assert_eq!(q2.pop().await.unwrap().item, item("two"));
    }
}

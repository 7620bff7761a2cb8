//! A shard's fetched batches on their way to its processor: one pending batch, which the
//! fetcher adds to while the processor is busy and the processor takes whole.
//!
//! A channel of batches would hand a processor that is slower than the stream one old
//! batch after another: every queue on the way (the subscription's, the fetcher's, the
//! shard's) holds a batch read before the previous one was processed, and each costs a
//! whole processing (a sink's fixed cost per batch: a PutRecords round, a flush), so the
//! latency grows to several processing times at any rate. Here what comes while the
//! processor works joins the pending batch, up to `max_records` records and 10 MiB
//! (GetRecords' own limits); past that the fetcher waits, so memory stays bounded by the
//! pending batch and the one read after it. The end of a shard is never joined to by
//! anything after it.

use std::sync::{Arc, Mutex, PoisonError};

use chief_stream::GetRecordsOutput;
use tokio::sync::Notify;

/// The largest pending batch, in bytes of record data (GetRecords' limit).
const MAX_BYTES: usize = 10 << 20;

struct State {
    pending: Option<GetRecordsOutput>,
    pending_bytes: usize,
    sender_gone: bool,
    receiver_gone: bool,
}

struct Shared {
    state: Mutex<State>,
    /// A batch was put (or the sender is gone).
    put: Notify,
    /// The pending batch was taken (or the receiver is gone).
    taken: Notify,
    max_records: usize,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The fetcher's end.
pub(crate) struct HandoffSender(Arc<Shared>);

/// The processor's end.
pub(crate) struct HandoffReceiver(Arc<Shared>);

/// The processor is gone: nothing more will be taken.
#[derive(Debug)]
pub(crate) struct ReceiverGone;

pub(crate) fn handoff(max_records: usize) -> (HandoffSender, HandoffReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            pending: None,
            pending_bytes: 0,
            sender_gone: false,
            receiver_gone: false,
        }),
        put: Notify::new(),
        taken: Notify::new(),
        max_records: max_records.max(1),
    });
    (HandoffSender(Arc::clone(&shared)), HandoffReceiver(shared))
}

fn bytes(batch: &GetRecordsOutput) -> usize {
    batch.records.iter().map(|r| r.data.len()).sum()
}

impl HandoffSender {
    /// Hands `batch` over: it becomes the pending batch, or joins it while they fit
    /// together; otherwise waits until the processor takes the pending one.
    pub(crate) async fn send(&self, batch: GetRecordsOutput) -> Result<(), ReceiverGone> {
        let size = bytes(&batch);
        loop {
            {
                let mut state = self.0.lock();
                if state.receiver_gone {
                    return Err(ReceiverGone);
                }
                let fits = match &state.pending {
                    None => true,
                    Some(p) => {
                        !p.is_shard_end()
                            && p.records.len() + batch.records.len() <= self.0.max_records
                            && state.pending_bytes + size <= MAX_BYTES
                    }
                };
                if fits {
                    match state.pending.as_mut() {
                        Some(p) => p.absorb(batch),
                        None => state.pending = Some(batch),
                    }
                    state.pending_bytes += size;
                    drop(state);
                    self.0.put.notify_one();
                    return Ok(());
                }
            }
            // A notification between the unlock and here is kept for this wait.
            self.0.taken.notified().await;
        }
    }
}

impl Drop for HandoffSender {
    fn drop(&mut self) {
        self.0.lock().sender_gone = true;
        self.0.put.notify_one();
    }
}

impl HandoffReceiver {
    /// The pending batch, everything fetched since the last one taken; `None` once the
    /// fetcher is gone and nothing is pending.
    pub(crate) async fn recv(&mut self) -> Option<GetRecordsOutput> {
        loop {
            {
                let mut state = self.0.lock();
                if let Some(batch) = state.pending.take() {
                    state.pending_bytes = 0;
                    drop(state);
                    self.0.taken.notify_one();
                    return Some(batch);
                }
                if state.sender_gone {
                    return None;
                }
            }
            self.0.put.notified().await;
        }
    }
}

impl Drop for HandoffReceiver {
    fn drop(&mut self) {
        self.0.lock().receiver_gone = true;
        self.0.taken.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use chief_stream::ReceivedRecord;

    use super::*;

    fn batch(from: u64, n: u64, end: bool) -> GetRecordsOutput {
        GetRecordsOutput {
            records: (from..from + n)
                .map(|i| ReceivedRecord {
                    sequence_number: format!("{i:056}"),
                    partition_key: "pk".to_owned(),
                    approximate_arrival: None,
                    data: Bytes::from(vec![b'x'; 10]),
                })
                .collect(),
            next_shard_iterator: (!end).then(|| format!("it-{}", from + n)),
            millis_behind_latest: Some(from),
            child_shards: Vec::new(),
        }
    }

    fn seqs(b: &GetRecordsOutput) -> Vec<u64> {
        b.records
            .iter()
            .map(|r| r.sequence_number.parse().unwrap_or(u64::MAX))
            .collect()
    }

    #[tokio::test]
    async fn what_comes_while_the_processor_is_busy_is_taken_as_one_batch_in_order() {
        let (tx, mut rx) = handoff(10);
        for from in [0, 3, 6] {
            tx.send(batch(from, 3, false))
                .await
                .unwrap_or_else(|e| panic!("{e:?}"));
        }
        let got = rx.recv().await.unwrap_or_default();
        assert_eq!(seqs(&got), (0..9).collect::<Vec<_>>());
        assert_eq!(
            got.next_shard_iterator.as_deref(),
            Some("it-9"),
            "the newest read's"
        );
        assert_eq!(got.millis_behind_latest, Some(6));
    }

    #[tokio::test]
    async fn a_full_batch_makes_the_fetcher_wait_and_nothing_joins_the_end() {
        let (tx, mut rx) = handoff(4);
        tx.send(batch(0, 3, false))
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        // 3 + 3 > 4: waits until the pending batch is taken.
        let fetcher = tokio::spawn(async move {
            tx.send(batch(3, 3, false))
                .await
                .unwrap_or_else(|e| panic!("{e:?}"));
            tx.send(batch(6, 1, true))
                .await
                .unwrap_or_else(|e| panic!("{e:?}"));
            tx.send(batch(7, 1, false)).await
        });
        tokio::task::yield_now().await;
        assert_eq!(seqs(&rx.recv().await.unwrap_or_default()), vec![0, 1, 2]);
        let second = rx.recv().await.unwrap_or_default();
        assert_eq!(
            seqs(&second),
            vec![3, 4, 5, 6],
            "the end joins a batch that fits"
        );
        assert!(second.is_shard_end());
        // Nothing joins the end: the next read waits for it to be taken; the processor
        // is then gone, so the fetcher learns it.
        drop(rx);
        assert!(matches!(fetcher.await, Ok(Err(ReceiverGone))));
    }

    #[tokio::test]
    async fn the_processor_learns_the_fetcher_is_gone_after_the_last_batch() {
        let (tx, mut rx) = handoff(10);
        tx.send(batch(0, 2, false))
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        drop(tx);
        assert_eq!(seqs(&rx.recv().await.unwrap_or_default()), vec![0, 1]);
        assert!(rx.recv().await.is_none());
    }
}

//! The record processor of one shard: its batches go to the [`Board`]. The dashboard
//! keeps its state in memory only, so it checkpoints nothing but `SHARD_END` (which lets
//! a closed shard's children start); each start reads the streams again from their
//! oldest record (`reset_leases`), and the page shows the streams' retention window.

use std::sync::Arc;

use chief_consumer::{
    LeaseLostInput, ProcessRecordsInput, ProcessorError, ProcessorFactory, RecordProcessor,
    ShardEndedInput, ShutdownRequestedInput,
};

use crate::state::{Board, Source};

/// Makes a [`DashboardProcessor`] per shard of one stream.
pub struct DashboardFactory {
    board: Arc<Board>,
    source: Source,
}

impl DashboardFactory {
    /// Processors of `source`'s shards, feeding `board`.
    pub fn new(board: Arc<Board>, source: Source) -> Self {
        Self { board, source }
    }
}

impl ProcessorFactory for DashboardFactory {
    type Processor = DashboardProcessor;

    fn create(&self, shard_id: &str) -> Self::Processor {
        DashboardProcessor {
            board: Arc::clone(&self.board),
            source: self.source,
            shard_id: shard_id.to_owned(),
        }
    }
}

/// One shard's processor.
pub struct DashboardProcessor {
    board: Arc<Board>,
    source: Source,
    shard_id: String,
}

impl RecordProcessor for DashboardProcessor {
    async fn process_records(
        &mut self,
        input: ProcessRecordsInput<'_>,
    ) -> Result<(), ProcessorError> {
        self.board.apply(
            self.source,
            &self.shard_id,
            input.millis_behind_latest,
            input.records,
        );
        Ok(())
    }

    async fn lease_lost(&mut self, _input: LeaseLostInput<'_>) {
        self.board.release(self.source, &self.shard_id);
    }

    async fn shard_ended(&mut self, input: ShardEndedInput<'_>) -> Result<(), ProcessorError> {
        // Every record of the shard is on the board: its children may start.
        input.checkpointer.checkpoint().await?;
        self.board.release(self.source, &self.shard_id);
        Ok(())
    }

    async fn shutdown_requested(
        &mut self,
        _input: ShutdownRequestedInput<'_>,
    ) -> Result<(), ProcessorError> {
        self.board.release(self.source, &self.shard_id);
        Ok(())
    }
}

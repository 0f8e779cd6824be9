//! [`Traffic`]: frames and bytes a transport's connections read and wrote, counted once per
//! frame for the server's metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
struct Counts {
    frames_in: AtomicU64,
    bytes_in: AtomicU64,
    frames_out: AtomicU64,
    bytes_out: AtomicU64,
}

/// Counters of frames and bytes, shared by every connection of a transport. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Traffic(Arc<Counts>);

impl Traffic {
    /// Frames read.
    pub fn frames_in(&self) -> u64 {
        self.0.frames_in.load(Ordering::Relaxed)
    }

    /// Bytes of the frames read, length fields included.
    pub fn bytes_in(&self) -> u64 {
        self.0.bytes_in.load(Ordering::Relaxed)
    }

    /// Frames written.
    pub fn frames_out(&self) -> u64 {
        self.0.frames_out.load(Ordering::Relaxed)
    }

    /// Bytes of the frames written, length fields included.
    pub fn bytes_out(&self) -> u64 {
        self.0.bytes_out.load(Ordering::Relaxed)
    }

    /// Counts one frame of `bytes` read.
    pub(crate) fn read(&self, bytes: usize) {
        self.0.frames_in.fetch_add(1, Ordering::Relaxed);
        self.0.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts one frame of `bytes` written.
    pub(crate) fn wrote(&self, bytes: usize) {
        self.0.frames_out.fetch_add(1, Ordering::Relaxed);
        self.0.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

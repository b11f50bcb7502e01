//! Bounds on a share's request queues and READ/WRITE size.

use thiserror::Error;

/// Most request queues one share serves (one thread each). virtio-fs puts no limit on it; this
/// one keeps a frontend from making a worker start thousands of threads.
pub const MAX_REQUEST_QUEUES: usize = 64;
/// `max_write` bounds: at least a page, at most 16 MiB (what one request may pin in memory).
pub const MIN_MAX_WRITE: u32 = 4096;
pub const MAX_MAX_WRITE: u32 = 16 << 20;
/// The `max_write` offered by default: 1 MiB, as virtiofsd.
pub const DEFAULT_MAX_WRITE: u32 = 1 << 20;

/// Request pool threads by default: enough that a few FSYNCs or large READs in flight do not
/// queue behind each other, few enough to cost nothing worth noting while idle
/// (docs/performance.md).
pub const DEFAULT_POOL_THREADS: usize = 4;
/// Most pool threads a share may have (as with queues, so a typo cannot spawn thousands).
pub const MAX_POOL_THREADS: usize = 64;
/// Adaptive polling ceiling by default, µs (0: off); chosen from the measurements in
/// docs/performance.md.
pub const DEFAULT_POLL_MAX_US: u32 = 0;
/// Largest accepted polling ceiling, µs: 10 ms of spinning is already far past any gain.
pub const MAX_POLL_US: u32 = 10_000;

/// A queue count or size outside its bounds.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LimitError {
    #[error("{0}: must be between 1 and {MAX_REQUEST_QUEUES}")]
    Queues(usize),
    #[error("{0}: must be between 4096 and 16 MiB")]
    MaxWrite(u32),
    #[error("{0}: must be between 0 and {MAX_POOL_THREADS}")]
    PoolThreads(usize),
    #[error("{0}: must be between 0 and {MAX_POLL_US}")]
    PollMax(u32),
}

/// Checks a request pool size: 0 (no pool) to [`MAX_POOL_THREADS`].
pub fn check_pool_threads(threads: usize) -> Result<usize, LimitError> {
    if threads <= MAX_POOL_THREADS {
        Ok(threads)
    } else {
        Err(LimitError::PoolThreads(threads))
    }
}

/// Checks an adaptive polling ceiling: 0 (off) to [`MAX_POLL_US`].
pub fn check_poll_max_us(us: u32) -> Result<u32, LimitError> {
    if us <= MAX_POLL_US {
        Ok(us)
    } else {
        Err(LimitError::PollMax(us))
    }
}

/// Checks a request queue count: 1 to [`MAX_REQUEST_QUEUES`].
pub fn check_request_queues(queues: usize) -> Result<usize, LimitError> {
    if (1..=MAX_REQUEST_QUEUES).contains(&queues) {
        Ok(queues)
    } else {
        Err(LimitError::Queues(queues))
    }
}

/// Checks `max_write`: [`MIN_MAX_WRITE`] to [`MAX_MAX_WRITE`].
pub fn check_max_write(max_write: u32) -> Result<u32, LimitError> {
    if (MIN_MAX_WRITE..=MAX_MAX_WRITE).contains(&max_write) {
        Ok(max_write)
    } else {
        Err(LimitError::MaxWrite(max_write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(check_request_queues(1), Ok(1));
        assert_eq!(check_request_queues(64), Ok(64));
        assert_eq!(check_request_queues(0), Err(LimitError::Queues(0)));
        assert_eq!(check_request_queues(65), Err(LimitError::Queues(65)));
        assert_eq!(check_max_write(4096), Ok(4096));
        assert_eq!(check_max_write(16 << 20), Ok(16 << 20));
        assert_eq!(check_max_write(4095), Err(LimitError::MaxWrite(4095)));
        assert_eq!(
            check_max_write((16 << 20) + 1),
            Err(LimitError::MaxWrite((16 << 20) + 1))
        );
    }
}

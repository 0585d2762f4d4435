//! Per-thread spare buffers of idle connections: a connection waiting for its next request
//! holds no buffer; it gives its read buffer, its write buffer and its header map to this
//! thread's stock when a read finds nothing to read, and takes a set back when bytes arrive.
//! A connection that ends gives its set too, for the thread's next connection.
//! Memory then follows the requests in flight, not the connections open (nginx's model), and
//! a set changes hands with a push and a pop, not an allocation.
//!
//! The stock is bounded ([`KEEP`] sets); past it sets are freed. Nothing here is shared
//! between threads.

use bytes::BytesMut;
use http::HeaderMap;
use std::cell::RefCell;

/// Sets kept per thread.
const KEEP: usize = 512;
/// A fresh read buffer's room.
pub(crate) const READ_ROOM: usize = 4 * 1024;
/// A fresh write buffer's room.
const WRITE_ROOM: usize = 512;

/// One connection's buffers.
#[derive(Debug, Default)]
pub(crate) struct Kit {
    /// Bytes read and not consumed (empty when given back).
    pub(crate) read: BytesMut,
    /// Head bytes queued to write (empty when given back).
    pub(crate) write: BytesMut,
    /// The next request's fields (empty when given back).
    pub(crate) map: HeaderMap,
}

thread_local! {
    static STOCK: RefCell<Vec<Kit>> = const { RefCell::new(Vec::new()) };
}

/// A set from this thread's stock, or a new one.
pub(crate) fn take() -> Kit {
    STOCK.with(|s| s.borrow_mut().pop()).unwrap_or_else(|| Kit {
        read: BytesMut::with_capacity(READ_ROOM),
        write: BytesMut::with_capacity(WRITE_ROOM),
        map: HeaderMap::new(),
    })
}

/// Gives an idle connection's set back (its buffers must be empty).
pub(crate) fn give(kit: Kit) {
    debug_assert!(kit.read.is_empty() && kit.write.is_empty() && kit.map.is_empty());
    STOCK.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < KEEP {
            s.push(kit);
        }
    });
}

/// Sets in this thread's stock now.
#[cfg(test)]
pub(crate) fn stocked() -> usize {
    STOCK.with(|s| s.borrow().len())
}

//! The inline HTTP/1.1 client towards endpoints: no task and no channel per connection — the
//! request's own future writes the request and reads the response head, and the response body
//! (which owns the connection) reads the rest and hands the connection back to the endpoint's
//! pool only when the response was read to its exact end and both sides keep it open.
//!
//! Layers, top down: `exchange` (one request/response) and `body` (the response body) use
//! `pump` (sending the request body), the codec — [`encode`] (request heads, chunk framing),
//! [`decode`] (response heads, framing rules) and `chunked` (chunked bodies) — and `conn`
//! (the byte stream and its buffers). The codec is public for its benches; everything else is
//! the crate's.
//!
//! Response framing is strict (see [`decode`]): what two readers could delimit differently is
//! refused with a 502, and its connection closed.

pub(crate) mod body;
mod chunked;
pub(crate) mod conn;
pub mod decode;
pub mod encode;
pub(crate) mod exchange;
mod pump;

pub use chunked::{ChunkedDecoder, Decoded};

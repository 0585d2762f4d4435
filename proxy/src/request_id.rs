//! Request ids: a client's `x-request-id` is kept when it is well-formed (1 to
//! [`MAX_LEN`] visible ASCII characters), otherwise the proxy makes one of 128 random bits in
//! hex. The same id goes to the endpoint, back to the client and into the access log.

use http::HeaderValue;

/// The longest client-supplied id passed through.
pub(crate) const MAX_LEN: usize = 128;

/// Whether a client's id may be passed through: bounded, visible ASCII only (no spaces or
/// control characters that could split a log line).
#[inline]
pub(crate) fn well_formed(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= MAX_LEN && b.iter().all(|c| c.is_ascii_graphic())
}

/// The request's id: the client's when well-formed, else a fresh random one.
#[inline]
pub(crate) fn of(client: Option<&HeaderValue>) -> HeaderValue {
    match client {
        Some(v) if well_formed(v) => v.clone(),
        _ => fresh(),
    }
}

/// 128 random bits as 32 lowercase hex digits.
pub(crate) fn fresh() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = rand::random::<u128>().to_be_bytes();
    let mut buf = [0u8; 32];
    // A byte a step (two digits) over the bytes, not four bits a step over a `u128`: the
    // 128-bit shifts cost more than the rest of the id.
    for (pair, b) in buf.chunks_exact_mut(2).zip(bits) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
    HeaderValue::from_bytes(&buf).expect("hex digits are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_are_128_random_bits_in_hex() {
        let ids: Vec<HeaderValue> = (0..64).map(|_| fresh()).collect();
        for id in &ids {
            assert_eq!(id.len(), 32);
            assert!(id.as_bytes().iter().all(|c| c.is_ascii_hexdigit()));
        }
        // Neither half is constant (the old ids had a fixed per-process half).
        let first: std::collections::HashSet<_> = ids.iter().map(|i| &i.as_bytes()[..16]).collect();
        let second: std::collections::HashSet<_> =
            ids.iter().map(|i| &i.as_bytes()[16..]).collect();
        assert_eq!(first.len(), 64);
        assert_eq!(second.len(), 64);
    }

    #[test]
    fn well_formed_client_ids_pass_through_and_others_are_replaced() {
        let ok = HeaderValue::from_static("abc-123_DEF.456");
        assert_eq!(of(Some(&ok)), ok);
        let long = HeaderValue::from_str(&"a".repeat(MAX_LEN)).unwrap();
        assert_eq!(of(Some(&long)), long);
        for bad in [
            HeaderValue::from_str(&"a".repeat(MAX_LEN + 1)).unwrap(),
            HeaderValue::from_static("has space"),
            HeaderValue::from_static(""),
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        ] {
            let id = of(Some(&bad));
            assert_ne!(id, bad);
            assert_eq!(id.len(), 32);
        }
        assert_eq!(of(None).len(), 32);
    }
}

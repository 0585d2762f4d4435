use super::*;

fn parse(text: &[u8]) -> Result<Option<ResponseHead>, DecodeError> {
    parse_response_head(&mut BytesMut::from(text))
}

fn framing(text: &[u8], head_request: bool) -> Result<(Framing, bool), DecodeError> {
    let head = parse(text)?.expect("complete head");
    response_framing(&head, head_request)
}

#[test]
fn a_head_is_split_off_and_what_follows_stays() {
    let mut buf =
        BytesMut::from(&b"HTTP/1.1 201 Created\r\nX-A: 1\r\nx-a: 2\r\nServer: t\r\n\r\nbody"[..]);
    let head = parse_response_head(&mut buf)
        .expect("valid")
        .expect("complete");
    assert_eq!(head.status, StatusCode::CREATED);
    assert_eq!(head.version, Version::HTTP_11);
    let a: Vec<_> = head.headers.get_all("x-a").iter().collect();
    assert_eq!(a, ["1", "2"]);
    assert_eq!(head.headers["server"], "t");
    assert_eq!(&buf[..], b"body");
}

#[test]
fn a_partial_head_asks_for_more_and_garbage_is_an_error() {
    assert!(
        parse(b"HTTP/1.1 200 OK\r\ncontent-le")
            .expect("valid")
            .is_none()
    );
    assert_eq!(
        parse(b"HTTP/2.0 200 OK\r\n\r\n").err(),
        Some(DecodeError::Head)
    );
    assert_eq!(parse(b"hello\r\n\r\n").err(), Some(DecodeError::Head));
    assert_eq!(
        parse(b"HTTP/1.1 200 OK\r\nfolded: a\r\n b\r\n\r\n").err(),
        Some(DecodeError::Head)
    );
    let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES + 1));
    assert_eq!(parse(&big).err(), Some(DecodeError::HeadTooLarge));
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(parse(&many).err(), Some(DecodeError::HeadTooLarge));
}

#[test]
fn framing_follows_rfc_9112_and_refuses_ambiguity() {
    type Case = (&'static [u8], bool, Result<(Framing, bool), DecodeError>);
    let cases: &[Case] = &[
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
            false,
            Ok((Framing::Length(5), true)),
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\ncontent-length: 5\r\n\r\n",
            false,
            Ok((Framing::Length(5), true)),
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            false,
            Ok((Framing::Empty, true)),
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
            true,
            Ok((Framing::Empty, true)),
        ),
        (
            b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n",
            false,
            Ok((Framing::Empty, true)),
        ),
        (
            b"HTTP/1.1 304 Not Modified\r\ntransfer-encoding: chunked\r\n\r\n",
            false,
            Ok((Framing::Empty, true)),
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n\r\n",
            false,
            Ok((Framing::Chunked, true)),
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
            false,
            Ok((Framing::Close, false)),
        ),
        (
            b"HTTP/1.1 200 OK\r\n\r\n",
            false,
            Ok((Framing::Close, false)),
        ),
        (
            b"HTTP/1.1 200 OK\r\nconnection: Close\r\ncontent-length: 1\r\n\r\n",
            false,
            Ok((Framing::Length(1), false)),
        ),
        (
            b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n",
            false,
            Ok((Framing::Length(1), false)),
        ),
        (
            b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 1\r\n\r\n",
            false,
            Ok((Framing::Length(1), true)),
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
            false,
            Err(DecodeError::LengthAndEncoding),
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            false,
            Err(DecodeError::ContentLength),
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n",
            false,
            Err(DecodeError::ContentLength),
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            false,
            Err(DecodeError::ContentLength),
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: +1\r\n\r\n",
            false,
            Err(DecodeError::ContentLength),
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
            false,
            Err(DecodeError::ContentLength),
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\n",
            false,
            Err(DecodeError::ContentLength),
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
            false,
            Err(DecodeError::TransferEncoding),
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, chunked\r\n\r\n",
            false,
            Err(DecodeError::TransferEncoding),
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
            false,
            Err(DecodeError::TransferEncoding),
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: ,\r\n\r\n",
            false,
            Err(DecodeError::TransferEncoding),
        ),
        (
            b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            false,
            Err(DecodeError::TransferEncoding),
        ),
    ];
    for (text, head_request, want) in cases {
        assert_eq!(
            &framing(text, *head_request),
            want,
            "{}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn the_hops_own_fields_are_kept_out_of_the_header_map() {
    let head = parse(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n")
        .expect("valid")
        .expect("complete");
    assert_eq!(head.headers.len(), 1, "{:?}", head.headers);
    assert_eq!(response_framing(&head, false), Ok((Framing::Chunked, true)));
    // A Connection naming other fields, or an upgrade, stays for the hop-by-hop stripping.
    let head = parse(b"HTTP/1.1 200 OK\r\nConnection: close, x-secret\r\nx-secret: 1\r\ncontent-length: 0\r\n\r\n")
        .expect("valid")
        .expect("complete");
    assert_eq!(head.headers["connection"], "close, x-secret");
    assert_eq!(response_framing(&head, false), Ok((Framing::Empty, false)));
    let head = parse(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .expect("valid")
    .expect("complete");
    assert_eq!(head.headers["connection"], "upgrade");
}

#[test]
fn common_names_are_the_names_the_general_parse_gives() {
    for set in [
        &LEN_4[..],
        &LEN_6,
        &LEN_7,
        &LEN_8,
        &LEN_10,
        &LEN_12,
        &LEN_13,
        &LEN_14,
        &LEN_16,
        &LEN_17,
    ] {
        for name in set {
            let lower = name.as_str();
            let upper = lower.to_ascii_uppercase();
            let title: String = lower
                .split('-')
                .map(|w| w[..1].to_ascii_uppercase() + &w[1..])
                .collect::<Vec<_>>()
                .join("-");
            for spelling in [lower, upper.as_str(), title.as_str()] {
                let general = HeaderName::from_bytes(spelling.as_bytes()).expect("valid");
                assert_eq!(common_name(spelling.as_bytes()).as_ref(), Some(&general));
            }
        }
    }
    assert_eq!(common_name(b"cOnTeNt-LeNgTh"), Some(header::CONTENT_LENGTH));
    // Same lengths, other names: left to the general parse.
    for other in [
        "x-id",
        "x-req-id",
        "content-typo",
        "content-lengths",
        "x-frame-opts",
        "content^type",
        "Content_Type",
        "content.length",
        "transfer-encodin",
        "transfer-encodinx",
        "Dat~",
    ] {
        assert_eq!(common_name(other.as_bytes()), None, "{other}");
    }
}

#[test]
fn a_head_parsed_into_a_used_map_has_only_its_own_fields() {
    let mut spare = HeaderMap::new();
    spare.insert("x-old", HeaderValue::from_static("1"));
    spare.insert(header::SERVER, HeaderValue::from_static("old"));
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nServer: t\r\nContent-Length: 0\r\n\r\n"[..]);
    let head = parse_response_head_into(&mut buf, &mut spare)
        .expect("valid")
        .expect("complete");
    assert_eq!(head.headers.len(), 2);
    assert_eq!(head.headers["server"], "t");
    assert_eq!(head.headers["content-length"], "0");
    assert!(head.headers.get("x-old").is_none());
    // A partial head leaves the map where it was.
    let mut spare = HeaderMap::new();
    spare.insert("x-old", HeaderValue::from_static("1"));
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nServ"[..]);
    assert!(
        parse_response_head_into(&mut buf, &mut spare)
            .expect("valid")
            .is_none()
    );
    assert_eq!(spare["x-old"], "1");
}

/// Parses `text` both ways: kept as bytes when it can be, and into a map.
fn both(text: &[u8]) -> (ResponseHead, ResponseHead) {
    let raw = parse_response_head_raw(&mut BytesMut::from(text), &mut HeaderMap::new())
        .expect("valid")
        .expect("complete");
    let map = parse(text).expect("valid").expect("complete");
    (raw, map)
}

/// The fields a head kept as bytes gives an HTTP/2 client, against the map parse's (which
/// keeps the endpoint's `X-Request-Id`; the proxy replaces it either way).
fn assert_same_fields(raw: &ResponseHead, map: &ResponseHead) {
    let kept = raw.raw.as_ref().expect("kept as bytes");
    assert!(raw.headers.is_empty());
    let mut from_raw = HeaderMap::new();
    kept.append_to(&mut from_raw);
    let mut expected = map.headers.clone();
    expected.remove("x-request-id");
    assert_eq!(from_raw, expected);
    assert_eq!(kept.has_date(), map.headers.contains_key(header::DATE));
    assert_eq!(
        kept.has_length(),
        map.headers.contains_key(header::CONTENT_LENGTH)
    );
    for head_request in [false, true] {
        assert_eq!(
            response_framing(raw, head_request),
            response_framing(map, head_request)
        );
    }
}

fn runs(head: &ResponseHead) -> String {
    let kept = head.raw.as_ref().expect("kept as bytes");
    kept.runs()
        .map(|r| String::from_utf8(r.to_vec()).unwrap())
        .collect::<Vec<_>>()
        .join("|")
}

#[test]
fn a_passing_head_is_kept_as_its_lines_less_the_hops_own() {
    let text = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Wed, 02 Dec 2026 19:00:00 GMT\r\n\
Content-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
ETag: \"x\"\r\nX-Request-Id: theirs\r\nX-Tail:  spaced value \r\n\r\nhello";
    let mut buf = BytesMut::from(&text[..]);
    let raw = parse_response_head_raw(&mut buf, &mut HeaderMap::new())
        .expect("valid")
        .expect("complete");
    assert_eq!(&buf[..], b"hello");
    assert_eq!(
        runs(&raw),
        "Server: nginx\r\nDate: Wed, 02 Dec 2026 19:00:00 GMT\r\nContent-Type: text/plain\r\n\
Content-Length: 5\r\n|ETag: \"x\"\r\n|X-Tail:  spaced value \r\n"
    );
    let (raw, map) = both(text);
    assert_same_fields(&raw, &map);
    assert_eq!(
        response_framing(&raw, false),
        Ok((Framing::Length(5), true))
    );
}

#[test]
fn the_framing_is_read_from_a_head_kept_as_bytes() {
    for text in [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nX-A: 1\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 30\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\n",
    ] {
        let (raw, map) = both(text);
        assert_same_fields(&raw, &map);
    }
    // Refused framing is refused the same way.
    for text in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    ] {
        let (raw, map) = both(text);
        assert!(raw.raw.is_some());
        assert!(response_framing(&raw, false).is_err());
        assert_eq!(response_framing(&raw, false), response_framing(&map, false));
    }
}

#[test]
fn heads_that_need_more_than_leaving_lines_out_go_through_the_map() {
    for text in [
        // Fields named by `Connection`, and the other hop-by-hop fields.
        &b"HTTP/1.1 200 OK\r\nConnection: x-a\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nTE: trailers\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTrailer: x-sum\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nUpgrade: websocket\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nProxy-Connection: close\r\n\r\n",
        b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n",
        // A line ending in a bare LF.
        b"HTTP/1.1 200 OK\r\nX-A: 1\nX-B: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\n",
        // Interim answers, a switch and 204 (whose length is dropped).
        b"HTTP/1.1 100 Continue\r\nX-A: 1\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        // More than four runs.
        b"HTTP/1.1 200 OK\r\nA: 1\r\nKeep-Alive: 1\r\nB: 1\r\nKeep-Alive: 1\r\nC: 1\r\n\
Keep-Alive: 1\r\nD: 1\r\nKeep-Alive: 1\r\nE: 1\r\n\r\n",
    ] {
        let (raw, map) = both(text);
        assert!(raw.raw.is_none(), "{}", String::from_utf8_lossy(text));
        assert_eq!(raw.headers, map.headers);
        assert_eq!(response_framing(&raw, false), response_framing(&map, false));
    }
    // Four runs are still kept.
    let (raw, map) = both(
        b"HTTP/1.1 200 OK\r\nA: 1\r\nKeep-Alive: 1\r\nB: 1\r\nKeep-Alive: 1\r\nC: 1\r\n\
Keep-Alive: 1\r\nD: 1\r\n\r\n",
    );
    assert_eq!(runs(&raw), "A: 1\r\n|B: 1\r\n|C: 1\r\n|D: 1\r\n");
    assert_same_fields(&raw, &map);
}

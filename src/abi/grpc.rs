//! Local responses to gRPC requests, as Envoy sends them: trailers-only
//! (HTTP 200, `content-type: application/grpc`, `grpc-status` and
//! `grpc-message` in the headers, no body), the status mapped from the
//! HTTP code when the filter gives none.

/// Whether a request's `content-type` makes it a gRPC request.
pub fn is_grpc(content_type: &[u8]) -> bool {
    let prefix = b"application/grpc";
    content_type.len() >= prefix.len()
        && content_type[..prefix.len()].eq_ignore_ascii_case(prefix)
        && matches!(content_type.get(prefix.len()), None | Some(b'+') | Some(b';'))
}

/// The gRPC status of an HTTP status (Envoy's `httpToGrpcStatus`, from
/// gRPC's "HTTP to gRPC status code mapping").
pub fn status_of_http(http: u32) -> u32 {
    match http {
        400 => 13,                   // INTERNAL
        401 => 16,                   // UNAUTHENTICATED
        403 => 7,                    // PERMISSION_DENIED
        404 => 12,                   // UNIMPLEMENTED
        429 | 502 | 503 | 504 => 14, // UNAVAILABLE
        _ => 2,                      // UNKNOWN
    }
}

/// A `grpc-message` value: bytes outside printable ASCII, and `%`,
/// percent-encoded (gRPC's rule).
pub fn encode_message(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    for &b in message {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

/// `%XX` sequences of a `grpc-message` decoded (others kept as they are).
pub fn decode_message(message: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(message.len());
    let mut i = 0;
    while i < message.len() {
        if message[i] == b'%' && i + 2 < message.len() {
            if let (Some(h), Some(l)) = (hex(message[i + 1]), hex(message[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(message[i]);
        i += 1;
    }
    out
}

/// A message as gRPC frames it: uncompressed, its length first.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// A header's name and value.
pub type Header = (Vec<u8>, Vec<u8>);

/// The local response a gRPC request gets instead of `status`, `body` and
/// the filter's `grpc_status` (-1: none): its status and the headers to add
/// (the body goes into `grpc-message`).
pub fn local_response(status: u32, grpc_status: i32, body: &[u8]) -> (u32, Vec<Header>) {
    let grpc = match grpc_status {
        0..=16 => grpc_status as u32,
        _ => status_of_http(status),
    };
    let mut headers = vec![
        (b"content-type".to_vec(), b"application/grpc".to_vec()),
        (b"grpc-status".to_vec(), grpc.to_string().into_bytes()),
    ];
    if !body.is_empty() {
        headers.push((b"grpc-message".to_vec(), encode_message(body)));
    }
    (200, headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_requests_are_known_by_their_content_type() {
        for yes in [
            &b"application/grpc"[..],
            b"application/grpc+proto",
            b"Application/GRPC;x=y",
        ] {
            assert!(is_grpc(yes), "{:?}", String::from_utf8_lossy(yes));
        }
        for no in [
            &b"application/grpc-web"[..],
            b"application/json",
            b"",
            b"application/grp",
        ] {
            assert!(!is_grpc(no), "{:?}", String::from_utf8_lossy(no));
        }
    }

    #[test]
    fn local_responses_to_grpc_requests_are_trailers_only() {
        let (status, headers) = local_response(403, -1, b"denied: 100%\n");
        assert_eq!(status, 200);
        assert_eq!(
            headers,
            vec![
                (b"content-type".to_vec(), b"application/grpc".to_vec()),
                (b"grpc-status".to_vec(), b"7".to_vec()),
                (b"grpc-message".to_vec(), b"denied: 100%25%0A".to_vec()),
            ]
        );
        // the filter's status wins; an empty body sends no message
        let (_, headers) = local_response(401, 16, b"");
        assert_eq!(headers[1], (b"grpc-status".to_vec(), b"16".to_vec()));
        assert_eq!(headers.len(), 2);
        assert_eq!(status_of_http(503), 14);
        assert_eq!(status_of_http(500), 2);
    }

    #[test]
    fn messages_round_trip_through_percent_encoding() {
        let text = b"denied: 100%\n\xff";
        assert_eq!(decode_message(&encode_message(text)), text.to_vec());
        assert_eq!(decode_message(b"50%"), b"50%".to_vec());
        assert_eq!(decode_message(b"%zz%41"), b"%zzA".to_vec());
        assert_eq!(frame(b"ab"), vec![0, 0, 0, 0, 2, b'a', b'b']);
    }
}

//! The control protocol's codec (`kinfra::protocol`): frames are read from the input as the
//! daemon (requests) or kinfractl (responses) reads them, and every message that decodes must
//! survive encode → frame → read → decode unchanged.
#![no_main]

use std::fmt::Debug;
use std::sync::OnceLock;

use kinfra::protocol::{self, FrameError, MAX_FRAME, Request, Response};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

async fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(payload: &[u8]) {
    let Ok(msg) = serde_json::from_slice::<T>(payload) else {
        return;
    };
    let mut wire: Vec<u8> = Vec::new();
    if let Err(e) = protocol::send(&mut wire, &msg).await {
        // Only a message whose encoding outgrew a frame (defaults written out) is refused.
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
        let len = serde_json::to_vec(&msg).expect("encodes").len();
        assert!(len > MAX_FRAME, "{len}-byte message refused: {e}");
        return;
    }
    let mut r = &wire[..];
    let frame = protocol::read_frame(&mut r).await.expect("own frame reads");
    assert!(r.is_empty(), "one frame, nothing after it");
    let back: T = serde_json::from_slice(&frame).expect("own encoding decodes");
    assert_eq!(back, msg);
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the reader: the daemon (requests) or the client (responses).
    let Some((&side, mut rest)) = data.split_first() else {
        return;
    };
    runtime().block_on(async {
        loop {
            match protocol::read_frame(&mut rest).await {
                Ok(payload) => {
                    assert!(payload.len() <= MAX_FRAME);
                    if side & 1 == 0 {
                        round_trip::<Request>(&payload).await;
                    } else {
                        round_trip::<Response>(&payload).await;
                    }
                }
                Err(FrameError::Closed) => break,
                Err(FrameError::TooLarge(n)) => {
                    assert!(n > MAX_FRAME);
                    break;
                }
                Err(FrameError::Io(e)) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
                    break;
                }
            }
        }
    });
});

//! What a WebSocket viewer sends, and how much of it the edge takes. Viewers have almost nothing to send (the
//! pongs to the edge's pings, perhaps pings of their own), so each may send `--inbound-frames-burst` frames at
//! once and `--max-inbound-frames-per-s` on average; past that, or on a frame that breaks RFC 6455, it is
//! closed with the close code the RFC gives the case (1008, 1002, 1007, 1009) before its TCP connection.
//!
//! Whatever it sends, the edge holds little for it: the WebSocket layer's read buffer, the one frame and the
//! one message being read (each at most `--max-inbound-bytes`), and one pong, flushed (by the `ws` module)
//! before anything more is read, so a viewer that does not read stops being read too.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::Error as WsError;

/// Why a viewer is closed for what it sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// More frames than its allowance.
    TooManyFrames,
    /// A message or frame over `--max-inbound-bytes`.
    TooBig,
    /// A text message (or close reason) that is not UTF-8.
    InvalidUtf8,
    /// Any other breach of the protocol: unmasked frame, reserved bits, unknown opcode, bad fragmentation.
    Protocol,
}

impl Violation {
    /// The violation a read error reports, if it is one; an I/O error or a reset is none (nobody is left to
    /// tell).
    pub fn of(error: &axum::Error) -> Option<Violation> {
        let error = std::error::Error::source(error)?.downcast_ref::<WsError>()?;
        match error {
            WsError::Capacity(_) => Some(Violation::TooBig),
            WsError::Utf8(_) => Some(Violation::InvalidUtf8),
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
            WsError::Protocol(_) | WsError::AttackAttempt => Some(Violation::Protocol),
            _ => None,
        }
    }

    /// The close code RFC 6455 (section 7.4.1) gives it.
    pub fn code(self) -> u16 {
        match self {
            Violation::TooManyFrames => 1008,
            Violation::TooBig => 1009,
            Violation::InvalidUtf8 => 1007,
            Violation::Protocol => 1002,
        }
    }

    /// The metric's label.
    pub fn label(self) -> &'static str {
        match self {
            Violation::TooManyFrames => "too_many_frames",
            Violation::TooBig => "too_big",
            Violation::InvalidUtf8 => "invalid_utf8",
            Violation::Protocol => "protocol_error",
        }
    }

    /// The Close frame the viewer gets.
    pub fn close_frame(self) -> CloseFrame {
        let reason = match self {
            Violation::TooManyFrames => "too many frames",
            Violation::TooBig => "message too big",
            Violation::InvalidUtf8 => "invalid UTF-8",
            Violation::Protocol => "protocol error",
        };
        CloseFrame {
            code: self.code(),
            reason: Utf8Bytes::from_static(reason),
        }
    }
}

/// What the next thing read from a viewer means.
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    /// A sign of life (a pong, or a message, which viewers have no use for).
    Alive,
    /// A ping: its pong is queued, to flush before reading on.
    Ping,
    /// The viewer closes (its Close is answered by the WebSocket layer, to flush).
    Closing,
    /// The connection is gone.
    Gone,
    Violation(Violation),
}

/// What the edge keeps of one viewer's side of the conversation: when it was last heard, and its allowance.
#[derive(Debug)]
pub struct Inbound {
    pub last_heard: Instant,
    allowance: Allowance,
}

impl Inbound {
    pub fn new(per_s: u32, burst: u32) -> Self {
        let now = Instant::now();
        Inbound {
            last_heard: now,
            allowance: Allowance::new(per_s, burst, now),
        }
    }

    pub fn hear(&mut self, inbound: Option<Result<Message, axum::Error>>) -> Heard {
        let message = match inbound {
            None => return Heard::Gone,
            Some(Err(error)) => return Violation::of(&error).map_or(Heard::Gone, Heard::Violation),
            Some(Ok(message)) => message,
        };
        if let Message::Close(_) = message {
            return Heard::Closing;
        }
        let now = Instant::now();
        if !self.allowance.take(now) {
            return Heard::Violation(Violation::TooManyFrames);
        }
        self.last_heard = now;
        match message {
            Message::Ping(_) => Heard::Ping,
            _ => Heard::Alive,
        }
    }
}

/// A token bucket: `burst` frames at once, refilled at `per_s` a second.
#[derive(Debug)]
struct Allowance {
    tokens: f64,
    per_s: f64,
    burst: f64,
    refilled: Instant,
}

impl Allowance {
    fn new(per_s: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Allowance {
            tokens: burst,
            per_s: f64::from(per_s),
            burst,
            refilled: now,
        }
    }

    /// Takes one frame's token, if there is one.
    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_s).min(self.burst);
        self.refilled = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_tungstenite::tungstenite::error::CapacityError;

    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let start = Instant::now();
        let mut allowance = Allowance::new(10, 3, start);
        assert!((0..3).all(|_| allowance.take(start)));
        assert!(!allowance.take(start), "past the burst");
        assert!(!allowance.take(start + Duration::from_millis(50)));
        assert!(
            allowance.take(start + Duration::from_millis(150)),
            "refilled"
        );
        let later = start + Duration::from_secs(60);
        assert_eq!(
            (0..10).filter(|_| allowance.take(later)).count(),
            3,
            "never more than the burst saved up"
        );
    }

    #[test]
    fn read_errors_map_to_their_close_codes() {
        let violation = |error: WsError| Violation::of(&axum::Error::new(error));
        let too_long = CapacityError::MessageTooLong {
            size: 5000,
            max_size: 4096,
        };
        assert_eq!(violation(too_long.into()), Some(Violation::TooBig));
        assert_eq!(
            violation(WsError::Utf8("bad".into())),
            Some(Violation::InvalidUtf8)
        );
        for protocol in [
            ProtocolError::UnmaskedFrameFromClient,
            ProtocolError::NonZeroReservedBits,
            ProtocolError::UnknownDataFrameType(3),
        ] {
            assert_eq!(violation(protocol.into()), Some(Violation::Protocol));
        }
        assert_eq!(
            violation(ProtocolError::ResetWithoutClosingHandshake.into()),
            None
        );
        assert_eq!(violation(WsError::ConnectionClosed), None);
        let codes = [
            Violation::TooManyFrames,
            Violation::TooBig,
            Violation::InvalidUtf8,
            Violation::Protocol,
        ]
        .map(|v| v.close_frame().code);
        assert_eq!(codes, [1008, 1009, 1007, 1002]);
    }

    #[test]
    fn past_the_allowance_a_viewer_is_in_violation() {
        let mut inbound = Inbound::new(1, 2);
        let ping = || Some(Ok(Message::Ping(Default::default())));
        assert_eq!(inbound.hear(ping()), Heard::Ping);
        assert_eq!(
            inbound.hear(Some(Ok(Message::Pong(Default::default())))),
            Heard::Alive
        );
        assert_eq!(
            inbound.hear(ping()),
            Heard::Violation(Violation::TooManyFrames)
        );
        assert_eq!(inbound.hear(Some(Ok(Message::Close(None)))), Heard::Closing);
        assert_eq!(inbound.hear(None), Heard::Gone);
    }
}

//! Reading and writing frames on an async stream (feature `tokio`): the one place both the
//! hub and the agent do it, so both bound lengths before allocating the same way. Also the
//! one error a channel ends with on either side, [`ChannelError`], worded per [`Side`].

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{frame_len, Frame, FrameError};

/// Why a frame could not be read or written. Exactly these two: callers match it
/// exhaustively.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The bytes are not a valid frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream failed or ended.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one frame, refusing a bad length before allocating for it.
pub async fn read_frame<R: AsyncRead + Unpin>(rd: &mut R) -> Result<Frame, WireError> {
    let mut header = [0u8; 4];
    rd.read_exact(&mut header).await?;
    let len = frame_len(header)?;
    let mut body = vec![0u8; len];
    rd.read_exact(&mut body).await?;
    Ok(Frame::decode(&body)?)
}

/// Writes one frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(wr: &mut W, f: &Frame) -> Result<(), WireError> {
    wr.write_all(&f.to_bytes()).await?;
    wr.flush().await?;
    Ok(())
}

/// Sends `rx`'s frames as they come and, after each `heartbeat` without one, a `Ping`
/// (numbered from 1) followed by whatever `after_ping` asks for; returns when `rx` closes.
/// Both ends' writers are this loop, so both keep the same heartbeat.
pub async fn write_with_heartbeat<W: AsyncWrite + Unpin>(
    wr: &mut W,
    rx: &mut tokio::sync::mpsc::Receiver<Frame>,
    heartbeat: Duration,
    mut after_ping: impl FnMut() -> Option<Frame>,
) -> Result<(), WireError> {
    let mut ping = 0u64;
    loop {
        match tokio::time::timeout(heartbeat, rx.recv()).await {
            Ok(Some(f)) => write_frame(wr, &f).await?,
            Ok(None) => return Ok(()),
            Err(_) => {
                ping += 1;
                write_frame(wr, &Frame::Ping(ping)).await?;
                if let Some(f) = after_ping() {
                    write_frame(wr, &f).await?;
                }
            }
        }
    }
}

/// The end of a channel that reports a [`ChannelError`]: it names the peer in the words that
/// side's operators read in its logs, and carries the reasons only that side ends a channel
/// for.
pub trait Side: fmt::Debug + Send + Sync + 'static {
    /// Why only this side ends a channel (the hub: an administrator's disconnect).
    type Own: std::error::Error + Send + Sync + 'static;
    /// Says the peer sent a malformed frame, e.g. "agent sent a malformed frame".
    const MALFORMED: &'static str;
    /// Says the peer broke the protocol's order.
    const BROKE: &'static str;
    /// Around the silence's length: "agent stopped answering (no frame for ", ")".
    const SILENT: (&'static str, &'static str);
    /// Says the connection to the peer failed.
    const IO: &'static str;
}

/// Why a channel ended, on either side: the endpoint's hub and the agent each alias it with
/// their own [`Side`]. Their wording differs (each names the other); the variants and the
/// conversion from [`WireError`] are this one.
#[derive(Debug)]
#[non_exhaustive]
pub enum ChannelError<S: Side> {
    /// The peer sent bytes that are not a valid frame.
    Frame(FrameError),
    /// The peer broke the protocol's order.
    Protocol(&'static str),
    /// The peer was silent for too long.
    Silent(Duration),
    /// Reading or writing failed.
    Io(std::io::Error),
    /// This side ended the channel for a reason of its own.
    Own(S::Own),
}

impl<S: Side> fmt::Display for ChannelError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame(e) => write!(f, "{}: {e}", S::MALFORMED),
            Self::Protocol(what) => write!(f, "{}: {what}", S::BROKE),
            Self::Silent(d) => write!(f, "{}{d:?}{}", S::SILENT.0, S::SILENT.1),
            Self::Io(e) => write!(f, "{}: {e}", S::IO),
            Self::Own(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<S: Side> std::error::Error for ChannelError<S> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Frame(e) => Some(e),
            Self::Io(e) => Some(e),
            Self::Own(e) => e.source(),
            Self::Protocol(_) | Self::Silent(_) => None,
        }
    }
}

impl<S: Side> From<WireError> for ChannelError<S> {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Frame(f) => Self::Frame(f),
            WireError::Io(i) => Self::Io(i),
        }
    }
}

impl<S: Side> From<FrameError> for ChannelError<S> {
    fn from(e: FrameError) -> Self {
        Self::Frame(e)
    }
}

impl<S: Side> From<std::io::Error> for ChannelError<S> {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Near;

    impl Side for Near {
        type Own = std::convert::Infallible;
        const MALFORMED: &'static str = "peer sent a malformed frame";
        const BROKE: &'static str = "peer broke the protocol";
        const SILENT: (&'static str, &'static str) = ("peer silent (", ")");
        const IO: &'static str = "peer connection failed";
    }

    #[tokio::test(start_paused = true)]
    async fn the_writer_sends_frames_as_they_come_and_pings_when_idle() {
        let (mut near, mut far) = tokio::io::duplex(4096);
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let beat = Duration::from_secs(5);
        let writer = tokio::spawn(async move {
            let mut asked = 0;
            write_with_heartbeat(&mut near, &mut rx, beat, || {
                asked += 1;
                (asked == 1).then_some(Frame::Pong(99))
            })
            .await
        });
        tx.send(Frame::Pong(7)).await.expect("send");
        let f = read_frame(&mut far).await.expect("frame");
        assert!(matches!(f, Frame::Pong(7)), "{f:?}");
        let idle = tokio::time::Instant::now();
        let f = read_frame(&mut far).await.expect("ping");
        assert!(matches!(f, Frame::Ping(1)), "{f:?}");
        assert_eq!(idle.elapsed(), beat, "a ping after one idle heartbeat");
        let f = read_frame(&mut far).await.expect("asked");
        assert!(matches!(f, Frame::Pong(99)), "{f:?}");
        let f = read_frame(&mut far).await.expect("ping");
        assert!(matches!(f, Frame::Ping(2)), "{f:?}");
        drop(tx);
        writer.await.expect("join").expect("closed cleanly");
    }

    #[test]
    fn each_variant_is_worded_by_its_side_and_wire_errors_keep_their_kind() {
        let e: ChannelError<Near> = WireError::Frame(FrameError::TrailingBytes(3)).into();
        assert!(matches!(
            e,
            ChannelError::Frame(FrameError::TrailingBytes(3))
        ));
        assert_eq!(
            e.to_string(),
            "peer sent a malformed frame: 3 bytes after the end of the frame"
        );
        let io = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "eof");
        let e: ChannelError<Near> = WireError::Io(io).into();
        assert!(matches!(&e, ChannelError::Io(i) if i.kind() == std::io::ErrorKind::UnexpectedEof));
        assert_eq!(e.to_string(), "peer connection failed: eof");
        assert!(std::error::Error::source(&e).is_some());
        let e = ChannelError::<Near>::Silent(Duration::from_secs(3));
        assert_eq!(e.to_string(), "peer silent (3s)");
        let e = ChannelError::<Near>::Protocol("second hello");
        assert_eq!(e.to_string(), "peer broke the protocol: second hello");
    }
}

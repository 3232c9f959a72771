//! Async reading and writing of messages (feature `tokio`).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{decode, encode, message_len, MessageError};

/// Reads one message of at most `max` bytes, refusing a bad length before allocating.
pub async fn read<T, R>(rd: &mut R, max: usize) -> Result<T, MessageError>
where
    T: for<'de> serde::Deserialize<'de>,
    R: AsyncRead + Unpin,
{
    let mut header = [0u8; 4];
    rd.read_exact(&mut header).await?;
    let len = message_len(header, max)?;
    let mut body = vec![0u8; len];
    rd.read_exact(&mut body).await?;
    decode(&body)
}

/// Writes one message and flushes it.
pub async fn write<T, W>(wr: &mut W, value: &T) -> Result<(), MessageError>
where
    T: serde::Serialize,
    W: AsyncWrite + Unpin,
{
    wr.write_all(&encode(value)).await?;
    wr.flush().await?;
    Ok(())
}

//! A connection's output buffer: bytes are appended without I/O and
//! written later, as much as the socket takes, in one call where possible.

use std::io::{self, Write};

/// Bytes waiting to be written to one socket.
///
/// It starts empty. When it drains it keeps up to [`KEEP`] bytes of
/// memory for the next bytes (under a broadcast a stream is written ten
/// times a second, and growing a buffer from nothing each time costs more
/// than the write's bytes); the loop gives that memory back with
/// [`release`](OutBuf::release) once the load is gone, so an idle stream
/// holds no buffer at all.
#[derive(Debug, Default)]
pub struct OutBuf {
    /// The bytes; those before `start` are already written.
    buf: Vec<u8>,
    /// How far the socket has taken `buf`.
    start: usize,
}

/// The most memory a drained buffer keeps for its next bytes.
pub const KEEP: usize = 4096;

/// What a flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Bytes written by this flush.
    pub written: usize,
    /// Nothing is left waiting.
    pub drained: bool,
}

impl OutBuf {
    /// Appends bytes; never does I/O.
    pub fn push(&mut self, bytes: &[u8]) {
        self.tail().extend_from_slice(bytes);
    }

    /// Gives direct access for encoders that write in place.
    pub fn tail(&mut self) -> &mut Vec<u8> {
        // Reclaim the written front before growing, so a reader that keeps
        // up only partly does not make the buffer creep.
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        &mut self.buf
    }

    /// Bytes still waiting.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes until the buffer drains or the writer would block.
    ///
    /// # Errors
    /// Any write error other than `WouldBlock` and `Interrupted`; a write
    /// of zero bytes is reported as `WriteZero`.
    pub fn write_to(&mut self, writer: &mut impl Write) -> io::Result<Flushed> {
        let mut written = 0;
        while self.start < self.buf.len() {
            match writer.write(&self.buf[self.start..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.start += n;
                    written += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        let drained = self.start == self.buf.len();
        if drained {
            if self.buf.capacity() > KEEP {
                self.buf = Vec::new();
            } else {
                self.buf.clear();
            }
            self.start = 0;
        }
        Ok(Flushed { written, drained })
    }

    /// Gives the memory back if nothing is waiting: most streams sit idle
    /// most of the time.
    pub fn release(&mut self) {
        if self.is_empty() && self.buf.capacity() > 0 {
            self.buf = Vec::new();
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `room` bytes, then blocks.
    struct Pipe {
        taken: Vec<u8>,
        room: usize,
    }

    impl Write for Pipe {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = bytes.len().min(self.room).min(3);
            self.room -= n;
            self.taken.extend_from_slice(&bytes[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_keep_the_rest_in_order() {
        let mut out = OutBuf::default();
        out.push(b"hello ");
        out.push(b"world");
        let mut pipe = Pipe {
            taken: Vec::new(),
            room: 7,
        };
        let f = out.write_to(&mut pipe).unwrap();
        assert_eq!(
            f,
            Flushed {
                written: 7,
                drained: false
            }
        );
        assert_eq!(out.len(), 4);
        out.push(b"!");
        pipe.room = 100;
        let f = out.write_to(&mut pipe).unwrap();
        assert_eq!(
            f,
            Flushed {
                written: 5,
                drained: true
            }
        );
        assert_eq!(pipe.taken, b"hello world!");
        assert!(out.buf.capacity() > 0, "a drained buffer keeps its memory");
        out.push(b"more");
        out.release();
        assert_eq!(out.len(), 4, "release never drops waiting bytes");
        out.write_to(&mut pipe).unwrap();
        out.release();
        assert_eq!(out.buf.capacity(), 0, "a released buffer frees its memory");
        out.push(&[b'x'; KEEP + 1]);
        out.write_to(&mut Pipe {
            taken: Vec::new(),
            room: usize::MAX,
        })
        .unwrap();
        assert_eq!(
            out.buf.capacity(),
            0,
            "a large buffer is freed as it drains"
        );
    }

    #[test]
    fn zero_write_is_an_error() {
        struct Zero;
        impl Write for Zero {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Ok(0)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = OutBuf::default();
        out.push(b"x");
        assert_eq!(
            out.write_to(&mut Zero).unwrap_err().kind(),
            io::ErrorKind::WriteZero
        );
    }
}

//! The mock flash as an async driver, and [`Yielding`], an async driver
//! that is really suspended at every operation.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use embedded_storage_async::nor_flash as asynch;

use super::{MockError, MockFlash};

/// [`MockFlash`] is an async driver too (each operation done when polled),
/// so that the same flash can be driven through either interface.
impl<const R: usize, const W: usize, const E: usize> asynch::ReadNorFlash for MockFlash<R, W, E> {
    const READ_SIZE: usize = R;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), MockError> {
        ReadNorFlash::read(self, offset, bytes)
    }

    fn capacity(&self) -> usize {
        ReadNorFlash::capacity(self)
    }
}

impl<const R: usize, const W: usize, const E: usize> asynch::NorFlash for MockFlash<R, W, E> {
    const WRITE_SIZE: usize = W;
    const ERASE_SIZE: usize = E;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), MockError> {
        NorFlash::erase(self, from, to)
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), MockError> {
        NorFlash::write(self, offset, bytes)
    }
}

/// An async driver over a blocking one whose every operation first
/// returns `Pending` once (waking its task at once), as a driver waiting
/// for a DMA transfer or an interrupt does. Code driven over it is
/// suspended and resumed at each flash operation, which a driver that is
/// always ready never makes it do. Counts the suspensions.
#[derive(Clone, Debug)]
pub struct Yielding<F> {
    /// The flash.
    pub flash: F,
    /// Operations that were suspended once before they ran.
    pub suspensions: u64,
}

impl<F> Yielding<F> {
    /// `flash` as an async driver.
    pub fn new(flash: F) -> Self {
        Yielding {
            flash,
            suspensions: 0,
        }
    }

    /// Pending once, then ready.
    fn pause(&mut self) -> Pause {
        self.suspensions += 1;
        Pause(false)
    }
}

/// A future that is pending at its first poll.
struct Pause(bool);

impl Future for Pause {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<F: ErrorType> ErrorType for Yielding<F> {
    type Error = F::Error;
}

impl<F: ReadNorFlash> asynch::ReadNorFlash for Yielding<F> {
    const READ_SIZE: usize = F::READ_SIZE;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), F::Error> {
        self.pause().await;
        self.flash.read(offset, bytes)
    }

    fn capacity(&self) -> usize {
        self.flash.capacity()
    }
}

impl<F: NorFlash> asynch::NorFlash for Yielding<F> {
    const WRITE_SIZE: usize = F::WRITE_SIZE;
    const ERASE_SIZE: usize = F::ERASE_SIZE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), F::Error> {
        self.pause().await;
        self.flash.erase(from, to)
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), F::Error> {
        self.pause().await;
        self.flash.write(offset, bytes)
    }
}

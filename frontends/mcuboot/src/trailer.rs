//! Reading and writing MCUboot's image trailer, as `boot_read_swap_state`,
//! `boot_set_pending` and `boot_set_confirmed` do. Written once, as async
//! code, and compiled twice (see `lib.rs`).

use super::{io, NorFlash, ReadNorFlash};
use crate::{Error, Magic, Swap, SwapState, Trailer, FLAG_SET};
use flashpatch::{FlashError, FlashRole};

/// The trailer is MCUboot's boot state: its flash errors are the state's.
fn state_error<E: embedded_storage::nor_flash::NorFlashError>(e: E) -> Error {
    Error::Flash(FlashError::new(FlashRole::State, e))
}

/// The largest `BOOT_MAX_ALIGN` (and magic write) MCUboot has.
const MAX: usize = 32;

/// Reads `t.max_align` bytes at `off` (a multiple of it).
#[io]
async fn read_unit<F: ReadNorFlash>(
    slot: &mut F,
    t: &Trailer,
    off: u32,
) -> Result<[u8; MAX], Error> {
    let mut buf = [0u8; MAX];
    let n = t.max_align as usize;
    slot.read(off, &mut buf[..n]).await.map_err(state_error)?;
    Ok(buf)
}

/// `slot`'s trailer, as MCUboot reads it.
#[io]
pub async fn read_state<F: ReadNorFlash>(slot: &mut F, t: &Trailer) -> Result<SwapState, Error> {
    let len = t.magic_write_len();
    let at = t.slot_size - len;
    let mut m = [0u8; MAX];
    slot.read(at, &mut m[..len as usize])
        .await
        .map_err(state_error)?;
    let magic = &m[len as usize - 16..len as usize];
    let magic = if magic.iter().all(|&b| b == t.erased) {
        Magic::Unset
    } else if magic == t.magic() {
        Magic::Good
    } else {
        Magic::Bad
    };
    let info = read_unit(slot, t, t.swap_info_off()).await?[0];
    let swap = match (info == t.erased, info & 0x0F) {
        (false, 2) => Some(Swap::Test),
        (false, 3) => Some(Swap::Permanent),
        _ => None,
    };
    let flag = |b: u8| b == FLAG_SET;
    Ok(SwapState {
        magic,
        swap,
        image: if swap.is_some() { info >> 4 } else { 0 },
        copy_done: flag(read_unit(slot, t, t.copy_done_off()).await?[0]),
        image_ok: flag(read_unit(slot, t, t.image_ok_off()).await?[0]),
    })
}

/// Writes one byte at `off` as MCUboot's `boot_write_trailer` does: padded
/// with erased bytes to the write size.
#[io]
async fn write_flag<F: NorFlash>(
    slot: &mut F,
    t: &Trailer,
    off: u32,
    value: u8,
) -> Result<(), Error> {
    let mut buf = [t.erased; MAX];
    buf[0] = value;
    let n = t.write_size.max(1) as usize;
    slot.write(off, &buf[..n]).await.map_err(state_error)
}

/// `boot_set_pending` on the secondary slot: with an erased trailer,
/// writes the magic, then for [`Swap::Permanent`] image_ok, then the swap
/// info (`image << 4 | type`); with MCUboot's magic there already (a swap
/// is scheduled), nothing. [`Error::BadTrailer`] for anything else.
#[io]
pub async fn set_pending<F: NorFlash>(
    secondary: &mut F,
    t: &Trailer,
    swap: Swap,
    image: u8,
) -> Result<(), Error> {
    match read_state(secondary, t).await?.magic {
        Magic::Good => Ok(()),
        Magic::Bad => Err(Error::BadTrailer),
        Magic::Unset => {
            let len = t.magic_write_len() as usize;
            let mut m = [t.erased; MAX];
            m[len - 16..len].copy_from_slice(&t.magic());
            let at = t.slot_size - len as u32;
            secondary.write(at, &m[..len]).await.map_err(state_error)?;
            if swap == Swap::Permanent {
                write_flag(secondary, t, t.image_ok_off(), FLAG_SET).await?;
            }
            let info = (image & 0x0F) << 4 | swap.code();
            write_flag(secondary, t, t.swap_info_off(), info).await
        }
    }
}

/// `boot_set_confirmed` on the primary slot: the image MCUboot swapped in
/// on test works; writes image_ok if the magic is there and image_ok is
/// not, else nothing. [`Error::BadTrailer`] if the trailer is not MCUboot's.
#[io]
pub async fn set_confirmed<F: NorFlash>(primary: &mut F, t: &Trailer) -> Result<(), Error> {
    let st = read_state(primary, t).await?;
    match st.magic {
        Magic::Good if !st.image_ok => write_flag(primary, t, t.image_ok_off(), FLAG_SET).await,
        Magic::Good | Magic::Unset => Ok(()),
        Magic::Bad => Err(Error::BadTrailer),
    }
}

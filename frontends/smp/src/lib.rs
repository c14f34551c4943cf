//! An SMP server (the Simple Management Protocol of mcumgr, Zephyr and
//! MCUboot) for devices that update with flashpatch: `no_std`, no
//! allocator, RAM bounded by the buffers the caller gives it.
//!
//! - [`serial`]: Zephyr's SMP serial framing (lines of base64 that start
//!   with `06 09` or `04 14`, each frame with its length and a CRC-16), so
//!   SMP can share a UART with other traffic: bytes outside SMP lines are
//!   left alone.
//! - [`stream`]: SMP over a byte stream (messages back to back, each
//!   delimited by its header's length), as SMP's UDP and Bluetooth
//!   transports carry them.
//! - [`header`]: the 8-byte SMP header.
//! - [`Server`]: answers the OS group's echo (0), MCU Manager parameters
//!   (6) and reset (5), and the image group's state read (1/0) from what a
//!   [`Device`] says of its two slots, in the CBOR shapes mcumgr clients
//!   expect. Image upload (1/1), state write (1/0) and erase (1/5) it
//!   parses and leaves to the caller ([`Answer::Ask`]), which owns the
//!   flash and the update in progress, and answers with
//!   [`Server::uploaded`], [`Server::state_written`] and
//!   [`Server::erased`]. Other requests get `MGMT_ERR_ENOTSUP`.
//! - [`upload::Receiver`]: an upload applied into the inactive slot with
//!   flashpatch's slot manager as it arrives, resumable as SMP clients
//!   expect (and across resets, with checkpoints).
//!
//! `tests/smpmgr.rs` judges it with `smpmgr` from PyPI over a
//! pseudo-terminal, against a device whose uploads feed flashpatch's slot
//! manager: `smpmgr upgrade --format any PATCH` installs a flashpatch
//! patch, `image state-write --confirm` confirms it, `image erase`
//! empties the inactive slot; and with `smpmgr --ip` over UDP, whose
//! datagrams it reads as one byte stream.
#![no_std]
#![warn(missing_docs)]

pub mod header;
pub mod serial;
mod server;
pub mod stream;
pub mod upload;

pub use server::{
    image_slots, Action, Answer, Device, ImageSlot, Pending, Request, Server, Upload, BUF_SIZE,
    EBADSTATE,
};

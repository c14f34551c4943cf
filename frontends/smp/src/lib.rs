//! An SMP server (the Simple Management Protocol of mcumgr, Zephyr and
//! MCUboot) for devices that update with flashpatch: `no_std`, no
//! allocator, RAM bounded by the buffers the caller gives it.
//!
//! - [`serial`]: Zephyr's SMP serial framing (lines of base64 that start
//!   with `06 09` or `04 14`, each frame with its length and a CRC-16), so
//!   SMP can share a UART with other traffic: bytes outside SMP lines are
//!   left alone.
//! - [`header`]: the 8-byte SMP header.
//! - [`Server`]: answers the OS group's echo (0), MCU Manager parameters
//!   (6) and reset (5), and the image group's state read (1/0) from what a
//!   [`Device`] says of its two slots, in the CBOR shapes mcumgr clients
//!   expect. Other requests get `MGMT_ERR_ENOTSUP`.
//!
//! `tests/smpmgr.rs` judges it with `smpmgr` from PyPI over a
//! pseudo-terminal. Image upload, state write and erase are not here yet.
#![no_std]
#![warn(missing_docs)]

pub mod header;
pub mod serial;
mod server;

pub use server::{Action, Device, ImageSlot, Server, BUF_SIZE};

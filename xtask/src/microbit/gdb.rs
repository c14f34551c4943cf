//! A small client of QEMU's gdb stub (the GDB remote serial protocol):
//! what the micro:bit harness needs to give QEMU's nRF51 flash a life
//! longer than one QEMU process. It writes the flash before the core
//! starts (`-S`), stops the core at a breakpoint or at once, and reads the
//! flash back: a power cut that keeps the flash and loses the rest.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Bytes of memory per `m`/`M` packet (QEMU takes packets of up to 4 KiB).
const CHUNK: usize = 1024;

/// A connection to QEMU's gdb stub.
pub struct Gdb {
    s: UnixStream,
    /// Bytes received and not yet parsed.
    pending: Vec<u8>,
}

fn checksum(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Gdb {
    /// Connects to the stub listening on the Unix socket `path`, waiting
    /// up to `timeout` for it to appear.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Gdb, String> {
        let deadline = Instant::now() + timeout;
        let s = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("gdb stub {}: {e}", path.display()))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        Ok(Gdb {
            s,
            pending: Vec::new(),
        })
    }

    fn send(&mut self, data: &str) -> Result<(), String> {
        let p = format!("${data}#{:02x}", checksum(data.as_bytes()));
        self.s.write_all(p.as_bytes()).map_err(|e| e.to_string())
    }

    /// The next packet from the stub (acknowledged), within `timeout`.
    fn recv(&mut self, timeout: Duration) -> Result<String, String> {
        self.try_recv(timeout)?
            .ok_or_else(|| "the gdb stub did not answer".into())
    }

    /// The next packet from the stub (acknowledged), or `None` if none
    /// comes within `timeout`.
    fn try_recv(&mut self, timeout: Duration) -> Result<Option<String>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            // A packet: '$' data '#' two checksum digits; '+' acks before it.
            if let Some(start) = self.pending.iter().position(|&b| b == b'$') {
                if let Some(end) = self.pending[start..].iter().position(|&b| b == b'#') {
                    let end = start + end;
                    if self.pending.len() >= end + 3 {
                        let data = String::from_utf8_lossy(&self.pending[start + 1..end]).into();
                        self.pending.drain(..end + 3);
                        self.s.write_all(b"+").map_err(|e| e.to_string())?;
                        return Ok(Some(data));
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.s
                .set_read_timeout(Some(left.min(Duration::from_millis(200))))
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 4096];
            match self.s.read(&mut buf) {
                Ok(0) => return Err("the gdb stub closed".into()),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Sends `data` and returns the answer.
    fn ask(&mut self, data: &str) -> Result<String, String> {
        self.send(data)?;
        self.recv(Duration::from_secs(10))
    }

    fn ok(&mut self, data: &str) -> Result<(), String> {
        match self.ask(data)? {
            a if a == "OK" => Ok(()),
            a => Err(format!("gdb stub: {:.20}: {a}", data)),
        }
    }

    /// Writes `bytes` at `addr` (into the flash too: the stub writes ROM
    /// devices as a debugger's loader does).
    pub fn write_mem(&mut self, addr: u32, bytes: &[u8]) -> Result<(), String> {
        for (i, c) in bytes.chunks(CHUNK).enumerate() {
            let at = addr + (i * CHUNK) as u32;
            self.ok(&format!("M{at:x},{:x}:{}", c.len(), hex(c)))?;
        }
        Ok(())
    }

    /// Reads `len` bytes at `addr`.
    pub fn read_mem(&mut self, addr: u32, len: usize) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let n = CHUNK.min(len - out.len());
            let at = addr + out.len() as u32;
            let a = self.ask(&format!("m{at:x},{n:x}"))?;
            if a.len() != 2 * n {
                return Err(format!("gdb stub: reading {n} bytes at {at:#x}: {a:.20}"));
            }
            for i in 0..n {
                out.push(u8::from_str_radix(&a[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?);
            }
        }
        Ok(out)
    }

    /// Lets the core run.
    pub fn cont(&mut self) -> Result<(), String> {
        self.send("c")
    }

    /// Waits up to `timeout` for the core to stop (a breakpoint): its
    /// stop reply, or `None`.
    pub fn wait_stop(&mut self, timeout: Duration) -> Result<Option<String>, String> {
        self.try_recv(timeout)
    }

    /// Core register `n` (0 to 15) of the stopped core (from a `g`
    /// packet: r0 to r15, four little-endian bytes each, first).
    pub fn register(&mut self, n: u8) -> Result<u32, String> {
        let a = self.ask("g")?;
        let at = 8 * n as usize;
        let b = (0..4)
            .map(|i| u8::from_str_radix(a.get(at + 2 * i..at + 2 * i + 2).unwrap_or("zz"), 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| format!("gdb stub: register {n}: {a:.20}"))?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Sets (`on`) or clears a breakpoint at the Thumb code address `at`.
    pub fn breakpoint(&mut self, at: u32, on: bool) -> Result<(), String> {
        self.ok(&format!("{}0,{at:x},2", if on { "Z" } else { "z" }))
    }

    /// Runs the one instruction at the breakpoint the core stopped at, and
    /// lets it run on with the breakpoint in place.
    pub fn step_over_and_cont(&mut self, at: u32) -> Result<(), String> {
        self.breakpoint(at, false)?;
        self.send("s")?;
        self.recv(Duration::from_secs(10))?;
        self.breakpoint(at, true)?;
        self.cont()
    }
}

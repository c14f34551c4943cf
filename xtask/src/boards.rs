//! `cargo xtask bench --boards`: the demo's v1 -> v2 install on both
//! boards (`cargo xtask demo` and `cargo xtask demo --board microbit`, as
//! they run), and one table of what each measured: applier RAM, update-path
//! code, instructions per output byte and flash wear.
//!
//! Flash wear is counted by the boards' flash drivers (`MappedFlash`,
//! `Nvmc`; `firmware_demo::wear`) and logged by the application after the
//! install: `app: measured flash wear: install: erases=E writes=W
//! written=B; storing the patch: erases=… writes=… written=…`.

use crate::fuzz::thousands as n;

/// What a flash driver counted: erase units erased, writes made, bytes
/// those writes programmed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wear {
    pub erases: u64,
    pub writes: u64,
    pub written: u64,
}

/// The console line with the wear figures.
const WEAR_LINE: &str = "app: measured flash wear:";

impl Wear {
    /// `erases=E writes=W written=B`, as the device's `Wear` writes it.
    pub fn parse(text: &str) -> Option<Wear> {
        let num = |k| crate::demo::number_after(text, k);
        Some(Wear {
            erases: num("erases=")?,
            writes: num("writes=")?,
            written: num("written=")?,
        })
    }

    /// The install's and the storing's wear from a device's console.
    pub fn of_log(log: &[String]) -> Result<(Wear, Wear), String> {
        let line = log
            .iter()
            .find_map(|l| l.split_once(WEAR_LINE).map(|(_, rest)| rest))
            .ok_or("no flash wear line on the console")?;
        let (install, stored) = line
            .split_once(';')
            .ok_or_else(|| format!("a flash wear line without ';': {line}"))?;
        let parse = |t: &str| Wear::parse(t).ok_or_else(|| format!("flash wear line: {line}"));
        Ok((parse(install)?, parse(stored)?))
    }

    /// `E erase(s), B B written in W writes`.
    fn text(&self) -> String {
        format!(
            "{} {}, {} B written in {} writes",
            n(self.erases),
            if self.erases == 1 { "erase" } else { "erases" },
            n(self.written),
            n(self.writes)
        )
    }
}

/// What one board's demo measured of its install.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    /// The board, as `--board` names it.
    pub board: &'static str,
    /// The core, for the table.
    pub core: &'static str,
    /// Bytes of the applier state (a static).
    pub state: u64,
    /// Stack high-water of the install.
    pub stack: u64,
    /// Bytes of update-path code.
    pub code: u64,
    /// Instructions per byte of the new image over the install.
    pub ipb: u64,
    /// Bytes of the new image.
    pub image: u64,
    /// The flash's erase unit.
    pub unit: u64,
    /// Wear of the install (apply, verify, activate).
    pub install: Wear,
    /// Wear of storing the patch in the staging partition.
    pub stored: Wear,
}

impl Figures {
    /// The install's erases per erase unit the new image spans.
    pub fn erases_per_unit(&self) -> f64 {
        self.install.erases as f64 / self.image.div_ceil(self.unit).max(1) as f64
    }

    /// The demo summary's flash wear part.
    pub fn wear_summary(&self) -> String {
        format!(
            "flash wear: {} per update (install: apply, verify, activate; {:.2} erases per erase unit of the image, {} B units), storing the patch {}",
            self.install.text(),
            self.erases_per_unit(),
            self.unit,
            self.stored.text()
        )
    }
}

/// The table of both boards, in Markdown.
pub fn table(boards: &[Figures]) -> String {
    let mut t = String::from(
        "| board | applier RAM (static + stack) | update-path code | instructions per output byte | flash wear per install (apply, verify, activate) | storing the patch |\n\
         |---|---:|---:|---:|---|---|\n",
    );
    for f in boards {
        t += &format!(
            "| {} ({}) | {} B ({} + {}) | {} B | {} | {} ({:.2} per image erase unit of {} B) | {} |\n",
            f.board,
            f.core,
            n(f.state + f.stack),
            n(f.state),
            n(f.stack),
            n(f.code),
            n(f.ipb),
            f.install.text(),
            f.erases_per_unit(),
            n(f.unit),
            f.stored.text()
        );
    }
    t
}

/// `cargo xtask bench --boards`: both demos, then the table.
pub fn bench() -> Result<(), String> {
    let boards = [crate::demo::run(false)?, crate::microbit::run(false)?];
    println!(
        "\n**Both boards** (`cargo xtask bench --boards`: the v1 -> v2 install of each board's demo, QEMU `-icount shift=0`)\n"
    );
    print!("{}", table(&boards));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mps2() -> Figures {
        Figures {
            board: "mps2-an386",
            core: "Cortex-M4",
            state: 2788,
            stack: 1308,
            code: 19630,
            ipb: 218,
            image: 61384,
            unit: 4096,
            install: Wear {
                erases: 17,
                writes: 1000,
                written: 61500,
            },
            stored: Wear {
                erases: 1,
                writes: 12,
                written: 3072,
            },
        }
    }

    #[test]
    fn the_wear_line_parses() {
        let log = [
            "app: result: OK".to_string(),
            "app: measured flash wear: install: erases=17 writes=1000 written=61500; storing the patch: erases=1 writes=12 written=3072".to_string(),
        ];
        let (install, stored) = Wear::of_log(&log).unwrap();
        assert_eq!((install, stored), (mps2().install, mps2().stored));
        assert!(Wear::of_log(&log[..1]).is_err());
        let cut = ["app: measured flash wear: install: erases=17 writes=1000".to_string()];
        assert!(Wear::of_log(&cut).is_err());
    }

    #[test]
    fn the_table_is_as_documented() {
        let mut mb = mps2();
        mb.board = "microbit";
        mb.core = "Cortex-M0";
        mb.unit = 1024;
        mb.install.erases = 1;
        assert_eq!(
            table(&[mps2(), mb]),
            "| board | applier RAM (static + stack) | update-path code | instructions per output byte | flash wear per install (apply, verify, activate) | storing the patch |\n\
             |---|---:|---:|---:|---|---|\n\
             | mps2-an386 (Cortex-M4) | 4,096 B (2,788 + 1,308) | 19,630 B | 218 | 17 erases, 61,500 B written in 1,000 writes (1.13 per image erase unit of 4,096 B) | 1 erase, 3,072 B written in 12 writes |\n\
             | microbit (Cortex-M0) | 4,096 B (2,788 + 1,308) | 19,630 B | 218 | 1 erase, 61,500 B written in 1,000 writes (0.02 per image erase unit of 1,024 B) | 1 erase, 3,072 B written in 12 writes |\n"
        );
        assert_eq!(
            mps2().wear_summary(),
            "flash wear: 17 erases, 61,500 B written in 1,000 writes per update (install: apply, verify, activate; 1.13 erases per erase unit of the image, 4096 B units), storing the patch 1 erase, 3,072 B written in 12 writes"
        );
    }
}

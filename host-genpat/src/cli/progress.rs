//! Progress bars on stderr, drawn with indicatif: only on a terminal and
//! only for long jobs, so that piped output (and the tests) stay clean.

use std::io::{self, IsTerminal as _};

use indicatif::{ProgressBar, ProgressStyle};

use super::LONG_JOB;

/// A [`host_genpat::Progress`] that draws one bar per phase.
pub struct Bars {
    enabled: bool,
    bar: Option<ProgressBar>,
    /// "pass N of M" while a job makes more than one pass.
    pass: Option<(usize, usize)>,
}

impl Bars {
    /// Bars for a job over `job_bytes` bytes of input: drawn only if the job
    /// is long and stderr is a terminal.
    pub fn new(job_bytes: usize) -> Self {
        Bars {
            enabled: job_bytes > LONG_JOB && io::stderr().is_terminal(),
            bar: None,
            pass: None,
        }
    }

    /// For `apply`: `done` of `total` bytes of the patch are consumed.
    pub fn bytes(&mut self, phase: &'static str, done: usize, total: usize) {
        if self.enabled && self.bar.is_none() {
            host_genpat::Progress::start(self, phase, total as u64);
        }
        host_genpat::Progress::update(self, done as u64);
    }
}

impl host_genpat::Progress for Bars {
    fn pass(&mut self, n: usize, of: usize) {
        self.pass = (of > 1).then_some((n, of));
    }

    fn start(&mut self, phase: &'static str, total: u64) {
        self.finish();
        if !self.enabled {
            return;
        }
        let style = ProgressStyle::with_template("{msg:>9} [{wide_bar}] {percent:>3} %  {elapsed}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        self.bar = Some(
            ProgressBar::new(total)
                .with_style(style)
                .with_message(label(phase, self.pass)),
        );
    }

    fn update(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// The bar's label: the phase, and which pass when there are several.
fn label(phase: &str, pass: Option<(usize, usize)>) -> String {
    match pass {
        Some((n, of)) => format!("pass {n} of {of}: {phase}"),
        None => phase.to_string(),
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        host_genpat::Progress::finish(self);
    }
}

#[cfg(test)]
mod tests {
    use super::label;

    #[test]
    fn a_bar_of_several_passes_says_which() {
        assert_eq!(label("matching", Some((3, 13))), "pass 3 of 13: matching");
        assert_eq!(label("coding", None), "coding");
    }
}

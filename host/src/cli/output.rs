//! Everything a command prints on stdout goes through here, so a closed stdout is handled once
//! for every command: a reader that stopped early (`pinwarden jobs | head`) ends the command
//! quietly with exit status 0, where `println!` would panic.

use std::io::Write;

/// Writes `text` to stdout. A closed pipe exits the process quietly with status 0 (the reader
/// has what it wanted; nothing is left to say to it). Any other write error (a full disk under
/// a redirection) exits with status 1 and says so on stderr.
pub fn write(text: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(text).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(i32::from(super::exit::OK));
        }
        // stderr may be gone too: nothing more to do about it.
        let _ = writeln!(std::io::stderr(), "error: cannot write to stdout: {e}");
        std::process::exit(i32::from(super::exit::FAILED));
    }
}

/// `print!` through [`write`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write(format!($($arg)*).as_bytes())
    };
}

/// `println!` through [`write`].
macro_rules! outln {
    () => {
        $crate::cli::output::write(b"\n")
    };
    ($($arg:tt)*) => {{
        let mut line = format!($($arg)*);
        line.push('\n');
        $crate::cli::output::write(line.as_bytes())
    }};
}

pub(crate) use {out, outln};

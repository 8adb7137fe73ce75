//! Configuration files for the daemons and commands the tests start
//! (`support::daemon::Serve::config` starts a daemon on one).

use std::fmt::Write as _;
use std::path::Path;

/// Writes `<dir>/pinwarden.toml`: the data directory `dir`, node name `encoder-node-1`, one
/// `[[node]]` per (name, role, url), then `rest` (the `[policy]`, `[daemon]`... tables the
/// test needs, verbatim).
pub fn write(dir: &Path, nodes: &[(&str, &str, &str)], rest: &str) {
    let mut text = format!(
        "data_dir = \"{}\"\nnode_name = \"encoder-node-1\"\n",
        dir.display()
    );
    for (name, role, url) in nodes {
        let _ = write!(
            text,
            "\n[[node]]\nname = \"{name}\"\nurl = \"{url}\"\nrole = \"{role}\"\n"
        );
    }
    text.push('\n');
    text.push_str(rest);
    std::fs::write(dir.join("pinwarden.toml"), text).expect("write pinwarden.toml");
}

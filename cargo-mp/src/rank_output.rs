//! The output of an MPI run, every line prefixed with its rank and host: `[rank 2 on node1] `.
//!
//! The launcher tags each line with the rank that wrote it (Open MPI's `--tag-output`:
//! `[1,2]<stdout>:`, MPICH's `-prepend-rank`: `[2] `, Slurm's `--label`: `2: `); `cargo mp run`
//! reads the launcher's output through pipes and puts the rank's host beside it. Hosts come from
//! the run log, where rank 0 writes `rank <r> <host>` as each rank connects (before it is given
//! any work, so before a task of it prints); a line of a rank not (yet) in the log keeps the
//! rank alone. Lines without a tag (the launcher's own) pass unchanged; bytes are never lost or
//! re-encoded.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// How the launcher tags a line with its rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tags {
    /// Open MPI's `--tag-output`: `[<job>,<rank>]<stdout>:`, also in the middle of a line
    /// when the rank's previous output did not end with a newline.
    OpenMpi,
    /// MPICH hydra's `-prepend-rank`: `[<rank>] `.
    Mpich,
    /// Slurm's `srun --label`: `<rank>: `, the rank right-aligned.
    Slurm,
}

/// Rank → host, read from the run log.
#[derive(Debug)]
pub struct Hosts {
    log: PathBuf,
    known: HashMap<u32, String>,
    read_len: u64,
}

impl Hosts {
    /// Hosts of the ranks that the run log at `log` names (none yet: it is read when needed).
    pub fn new(log: PathBuf) -> Hosts {
        Hosts {
            log,
            known: HashMap::new(),
            read_len: 0,
        }
    }

    /// The host of `rank`, re-reading the log when it has grown since the last look.
    pub fn host(&mut self, rank: u32) -> Option<&str> {
        if !self.known.contains_key(&rank) {
            self.refresh();
        }
        self.known.get(&rank).map(String::as_str)
    }

    fn refresh(&mut self) {
        let len = std::fs::metadata(&self.log).map_or(0, |m| m.len());
        if len == self.read_len {
            return;
        }
        let Ok(text) = std::fs::read_to_string(&self.log) else {
            return;
        };
        self.read_len = len;
        for line in text.lines() {
            let mut words = line.split(' ');
            if let (Some("rank"), Some(rank), Some(host)) =
                (words.next(), words.next(), words.next())
                && let Ok(rank) = rank.parse()
            {
                self.known.insert(rank, host.to_owned());
            }
        }
    }
}

/// A tag found in a line: the rank, where the tag starts and where the text after it starts.
#[derive(Debug, PartialEq, Eq)]
struct Tag {
    rank: u32,
    start: usize,
    text: usize,
}

/// `digits` at `at`: their value and the index after them.
fn number(line: &[u8], at: usize) -> Option<(u32, usize)> {
    let end = at
        + line
            .get(at..)?
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
    if end == at || end - at > 9 {
        return None;
    }
    let value = std::str::from_utf8(&line[at..end]).ok()?.parse().ok()?;
    Some((value, end))
}

/// An Open MPI tag `[<job>,<rank>]<stream>:` starting at `at`.
fn openmpi_tag(line: &[u8], at: usize) -> Option<Tag> {
    let (_, i) = number(line, at.checked_add(1)?).filter(|_| line[at] == b'[')?;
    let (rank, i) = number(line, i + 1).filter(|_| line.get(i) == Some(&b','))?;
    let rest = line.get(i..)?;
    ["]<stdout>:", "]<stderr>:", "]<stddiag>:"]
        .iter()
        .find(|t| rest.starts_with(t.as_bytes()))
        .map(|t| Tag {
            rank,
            start: at,
            text: i + t.len(),
        })
}

/// The tags in `line`, in order: at its start only, or (Open MPI) wherever one begins.
fn tags(kind: Tags, line: &[u8]) -> Vec<Tag> {
    match kind {
        Tags::OpenMpi => {
            let mut found = Vec::new();
            let mut at = 0;
            while let Some(off) = line
                .get(at..)
                .and_then(|r| r.iter().position(|&b| b == b'['))
            {
                let start = at + off;
                match openmpi_tag(line, start) {
                    Some(tag) => {
                        at = tag.text;
                        found.push(tag);
                    }
                    None => at = start + 1,
                }
            }
            found
        }
        Tags::Mpich => (|| {
            let (rank, i) = number(line, 1).filter(|_| line.first() == Some(&b'['))?;
            line.get(i..)?.starts_with(b"] ").then_some(Tag {
                rank,
                start: 0,
                text: i + 2,
            })
        })()
        .into_iter()
        .collect(),
        Tags::Slurm => (|| {
            let pad = line.iter().take_while(|&&b| b == b' ').count();
            let (rank, i) = number(line, pad)?;
            line.get(i..)?.starts_with(b": ").then_some(Tag {
                rank,
                start: 0,
                text: i + 2,
            })
        })()
        .into_iter()
        .collect(),
    }
}

/// `line` (ending with its newline, if it had one) with each rank tag replaced by
/// `[rank <r> on <host>] `; a tag in the middle of a line starts a new line.
pub fn rewrite(kind: Tags, line: &[u8], hosts: &mut Hosts) -> Vec<u8> {
    let found = tags(kind, line);
    if found.is_empty() {
        return line.to_vec();
    }
    let mut out = Vec::with_capacity(line.len() + 32 * found.len());
    out.extend_from_slice(&line[..found[0].start]);
    if found[0].start > 0 {
        out.push(b'\n');
    }
    for (k, tag) in found.iter().enumerate() {
        let end = found.get(k + 1).map_or(line.len(), |next| next.start);
        match hosts.host(tag.rank) {
            Some(host) => write!(out, "[rank {} on {host}] ", tag.rank),
            None => write!(out, "[rank {}] ", tag.rank),
        }
        .expect("writing to a Vec cannot fail");
        out.extend_from_slice(&line[tag.text..end]);
        if k + 1 < found.len() && !out.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    out
}

/// Forwards `stream` (the launcher's stdout or stderr) to ours, line by line, rewritten. Keeps
/// reading when our own output is closed (`| head`), so the launcher never blocks on a full pipe.
pub fn forward(
    stream: impl Read + Send + 'static,
    kind: Tags,
    hosts: Arc<Mutex<Hosts>>,
    to_stderr: bool,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("mp-rank-output".into())
        .spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            let mut open = true;
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if !open {
                    continue;
                }
                let out = rewrite(
                    kind,
                    &line,
                    &mut hosts.lock().unwrap_or_else(|e| e.into_inner()),
                );
                let written = if to_stderr {
                    std::io::stderr().lock().write_all(&out)
                } else {
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(&out).and_then(|()| stdout.flush())
                };
                open = written.is_ok();
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts_with(lines: &str) -> (tempdir::Dir, Hosts) {
        let dir = tempdir::Dir::new();
        let log = dir.0.join("run.log");
        std::fs::write(&log, lines).unwrap();
        (dir, Hosts::new(log))
    }

    /// A directory removed when dropped (no dev-dependency needed for two tests).
    mod tempdir {
        pub(super) struct Dir(pub(super) std::path::PathBuf);
        impl Dir {
            pub(super) fn new() -> Dir {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let path = std::env::temp_dir().join(format!(
                    "cargo-mp-rank-output-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&path).unwrap();
                Dir(path)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn text(kind: Tags, line: &str, hosts: &mut Hosts) -> String {
        String::from_utf8(rewrite(kind, line.as_bytes(), hosts)).unwrap()
    }

    #[test]
    fn each_launchers_tag_becomes_rank_and_host() {
        let (_dir, mut hosts) = hosts_with("start 7 x\nrank 0 node1\nrank 2 node2\n");
        assert_eq!(
            text(Tags::OpenMpi, "[1,2]<stdout>:hello\n", &mut hosts),
            "[rank 2 on node2] hello\n"
        );
        assert_eq!(
            text(
                Tags::OpenMpi,
                "[1,0]<stderr>:[Process-1] oops\n",
                &mut hosts
            ),
            "[rank 0 on node1] [Process-1] oops\n"
        );
        assert_eq!(
            text(Tags::Mpich, "[2] hello\n", &mut hosts),
            "[rank 2 on node2] hello\n"
        );
        assert_eq!(
            text(Tags::Slurm, " 2: hello\n", &mut hosts),
            "[rank 2 on node2] hello\n"
        );
    }

    #[test]
    fn a_rank_not_yet_logged_keeps_its_rank_and_gets_its_host_once_logged() {
        let (_dir, mut hosts) = hosts_with("rank 0 node1\n");
        assert_eq!(
            text(Tags::OpenMpi, "[1,1]<stdout>:early\n", &mut hosts),
            "[rank 1] early\n"
        );
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(&hosts.log)
            .unwrap();
        log.write_all(b"rank 1 node3\n").unwrap();
        assert_eq!(
            text(Tags::OpenMpi, "[1,1]<stdout>:later\n", &mut hosts),
            "[rank 1 on node3] later\n"
        );
    }

    #[test]
    fn untagged_lines_and_lookalikes_pass_unchanged() {
        let (_dir, mut hosts) = hosts_with("rank 0 node1\n");
        for (kind, line) in [
            (Tags::OpenMpi, "mpirun noticed that process rank 1 exited\n"),
            (Tags::OpenMpi, "[1,x]<stdout>:no\n"),
            (Tags::OpenMpi, "[1,0]<other>:no\n"),
            (Tags::Mpich, "[0]no space\n"),
            (Tags::Slurm, "srun: error: node2: task 1: Killed\n"),
            (Tags::OpenMpi, "partial, no newline"),
        ] {
            assert_eq!(text(kind, line, &mut hosts), line, "{kind:?}");
        }
    }

    #[test]
    fn a_tag_after_a_partial_line_starts_a_line_of_its_own() {
        let (_dir, mut hosts) = hosts_with("rank 0 node1\nrank 1 node1\n");
        assert_eq!(
            text(
                Tags::OpenMpi,
                "[1,1]<stdout>:partial[1,0]<stdout>:out\n",
                &mut hosts
            ),
            "[rank 1 on node1] partial\n[rank 0 on node1] out\n"
        );
        assert_eq!(
            text(Tags::OpenMpi, "tail[1,0]<stdout>:out\n", &mut hosts),
            "tail\n[rank 0 on node1] out\n"
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_survive() {
        let (_dir, mut hosts) = hosts_with("rank 3 h\n");
        let out = rewrite(Tags::OpenMpi, b"[1,3]<stdout>:\xff\xfe\n", &mut hosts);
        assert_eq!(out, b"[rank 3 on h] \xff\xfe\n");
    }
}

//! The format of a run folder's `train-log.jsonl`: one JSON line per stage and epoch (`"stage":
//! "start"` for a cell's starting point, `"pretrain"` for a node's epochs, none for episodic epochs),
//! its writer and its reader. A line is written before its epoch's commit (`train::trainer`), so a
//! kill between them makes the epoch run again and repeats its line; a kill inside a write leaves a
//! last line without its newline. The writer drops such a line, the reader keeps an epoch's last line.

use std::path::Path;

use crate::error::{Error, Result};

/// Appends `line` to a JSON-lines log in one write. A last line without its newline was cut off by
/// a kill; lines are written before their epoch's commit, so its epoch was not committed and is
/// trained again: the cut-off line is dropped first.
pub fn append(path: &Path, line: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if text.last().is_some_and(|&b| b != b'\n') {
        let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        f.set_len(whole as u64).map_err(|e| Error::io(path, e))?;
    }
    f.write_all(format!("{line}\n").as_bytes())
        .map_err(|e| Error::io(path, e))?;
    // on disk before the commit that follows it: a committed epoch is never trained again, so a
    // line lost in a machine crash would be lost for good
    f.sync_data().map_err(|e| Error::io(path, e))
}

/// The lines of a `train-log.jsonl` (none when there is no log), one per stage and epoch: a line is
/// written before its epoch's commit, so a kill between them repeats it when the epoch is trained
/// again, and the last one stands in the first one's place; a last line without its newline is a
/// write a kill cut off (the next line written drops it) and is left out.
pub fn lines(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let whole = text.rfind('\n').map_or("", |i| &text[..i]);
    let mut lines: Vec<serde_json::Value> = Vec::new();
    let mut at: std::collections::HashMap<(String, Option<u64>), usize> = Default::default();
    for line in whole.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        let stage = value
            .get("stage")
            .and_then(|s| s.as_str())
            .unwrap_or("episodic");
        let key = (
            stage.to_string(),
            value.get("epoch").and_then(|e| e.as_u64()),
        );
        match at.get(&key) {
            Some(&i) => lines[i] = value,
            None => {
                at.insert(key, lines.len());
                lines.push(value);
            }
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::{append, lines};
    use crate::run_files as files;

    /// The log's writer and its reader agree on what a kill leaves: a line cut off mid-write is
    /// dropped by the next append and left out by the reader; an epoch's repeated line (killed after
    /// its line, before its commit) stands once, the last, in the first one's place.
    #[test]
    fn a_log_cut_off_or_repeated_by_a_kill_reads_as_one_line_per_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(files::TRAIN_LOG);
        let line = |epoch: u32, loss: f64| format!(r#"{{"epoch":{epoch},"mean_loss":{loss}}}"#);
        append(&log, r#"{"stage":"start","val_accuracy":0.5}"#).unwrap();
        append(&log, &line(0, 1.0)).unwrap();
        append(&log, &line(1, 0.9)).unwrap();
        std::fs::write(
            &log,
            [std::fs::read(&log).unwrap(), br#"{"epoch":2,"me"#.to_vec()].concat(),
        )
        .unwrap();
        let read = lines(&log).unwrap();
        assert_eq!(read.len(), 3, "the cut-off line is left out");
        append(&log, &line(1, 0.8)).unwrap();
        append(&log, &line(2, 0.7)).unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.contains(r#""me{"#) && text.ends_with("}\n"), "{text}");
        let losses: Vec<f64> = (lines(&log).unwrap().iter())
            .filter_map(|v| v["mean_loss"].as_f64())
            .collect();
        assert_eq!(losses, [1.0, 0.8, 0.7]);
        std::fs::write(&log, "{\"epoch\":0}\nnot json\n{\"epoch\":1}\n").unwrap();
        let e = lines(&log).unwrap_err().to_string();
        assert!(e.contains(files::TRAIN_LOG), "{e}");
        assert!(lines(&dir.path().join("none.jsonl")).unwrap().is_empty());
    }
}

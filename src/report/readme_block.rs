//! The README's results block: the latest committed table (`reports/<table>.md`, written by the `full`
//! profile) between `<!-- <table>:begin -->` and `<!-- <table>:end -->`, or a line saying there is none
//! yet. `reproduce --profile full` rewrites it; a test checks it matches, so it cannot go stale.

use crate::error::{Error, Result};

/// What the block holds when no full-profile table is committed.
pub fn placeholder(table: &str) -> String {
    format!(
        "No committed results yet: `reports/{table}.md` is written by `cargo xtask reproduce --table {}` (the `full` profile, on a GPU) and copied here.\n",
        table.trim_start_matches("table")
    )
}

/// The block's expected content for a committed table (or its absence).
pub fn expected_block(table: &str, committed_table: Option<&str>) -> String {
    match committed_table {
        Some(md) => md.to_string(),
        None => placeholder(table),
    }
}

fn markers(table: &str) -> (String, String) {
    (
        format!("<!-- {table}:begin -->\n"),
        format!("<!-- {table}:end -->"),
    )
}

/// The text between the markers.
pub fn current_block<'a>(readme: &'a str, table: &str) -> Result<&'a str> {
    let (begin, end) = markers(table);
    let start = readme
        .find(&begin)
        .ok_or_else(|| Error::invalid(format!("README.md has no `{}` marker", begin.trim())))?
        + begin.len();
    let stop = readme[start..]
        .find(&end)
        .ok_or_else(|| Error::invalid(format!("README.md has no `{end}` marker")))?
        + start;
    Ok(&readme[start..stop])
}

/// The README with the block replaced.
pub fn with_block(readme: &str, table: &str, block: &str) -> Result<String> {
    let current = current_block(readme, table)?;
    let start = current.as_ptr() as usize - readme.as_ptr() as usize;
    Ok(format!(
        "{}{}{}",
        &readme[..start],
        block,
        &readme[start + current.len()..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_block_matches_the_committed_table() {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let committed = std::fs::read_to_string(root.join("reports/table1.md")).ok();
        assert_eq!(
            current_block(&readme, "table1").unwrap(),
            expected_block("table1", committed.as_deref()),
            "README.md's table1 block is stale: run `cargo xtask reproduce --table 1` (full profile) or copy reports/table1.md into it"
        );
    }

    #[test]
    fn replacing_the_block_keeps_the_rest() {
        let text = "a\n<!-- t:begin -->\nold\n<!-- t:end -->\nb\n";
        let new = with_block(text, "t", "new\n").unwrap();
        assert_eq!(new, "a\n<!-- t:begin -->\nnew\n<!-- t:end -->\nb\n");
        assert!(current_block("no markers", "t").is_err());
    }
}

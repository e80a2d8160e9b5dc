//! Moving one file's bytes from a [`Location`] into `<dest>.part`, hashing as they arrive. HTTP
//! transfers resume a `.part` with a `Range` request, restart when the server ignores it, retry when
//! the connection drops, refuse HTML pages, and follow Google Drive's large-file confirmation.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::checksum::{Digests, StreamHasher};
use super::html_page::{drive_confirmation_url, looks_like_html};
use super::location::Location;
use crate::error::{Error, Result};
use crate::progress::bytes_bar;

/// How many times one URL is tried (resuming each time) before the next location is tried.
const ATTEMPTS: usize = 4;
const CHUNK: usize = 1 << 16;

/// The `.part` file a download into `dest` is written to before it is verified and renamed.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// An HTTP client with the suite's timeouts; one per run.
pub fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .user_agent(concat!("fewshot/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .timeout_recv_body(None)
        .max_redirects(10)
        .build()
        .new_agent()
}

/// Fetches `from` into `part` (resuming what is there when the source allows) and returns the
/// digests of the whole file. The caller verifies and renames.
pub fn transfer(agent: &ureq::Agent, from: &Location, part: &Path, label: &str) -> Result<Digests> {
    if let Some(parent) = part.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    match from {
        Location::Local(path) => copy_local(path, part, label),
        Location::Http(url) => download(agent, url, part, label),
    }
}

fn copy_local(source: &Path, part: &Path, label: &str) -> Result<Digests> {
    let mut input = File::open(source).map_err(|e| Error::io(source, e))?;
    let total = input.metadata().map(|m| m.len()).ok();
    let mut output = File::create(part).map_err(|e| Error::io(part, e))?;
    let mut hasher = StreamHasher::new();
    let bar = bytes_bar(label, total);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut buf).map_err(|e| Error::io(source, e))?;
        if n == 0 {
            break;
        }
        output.write_all(&buf[..n]).map_err(|e| {
            Error::io_writing(part, e, total.unwrap_or(0).saturating_sub(hasher.bytes()))
        })?;
        hasher.update(&buf[..n]);
        bar.inc(n as u64);
    }
    output.sync_all().map_err(|e| Error::io(part, e))?;
    bar.finish_and_clear();
    Ok(hasher.finish())
}

fn download(agent: &ureq::Agent, first_url: &str, part: &Path, label: &str) -> Result<Digests> {
    let mut url = first_url.to_string();
    let mut followed_confirmation = false;
    let mut last_problem = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tracing::info!(
                "{label}: {last_problem}; resuming (attempt {})",
                attempt + 1
            );
        }
        let may_retry = attempt + 1 < ATTEMPTS;
        match attempt_once(agent, &url, part, label, !followed_confirmation, may_retry)? {
            Attempt::Done(digests) => return Ok(digests),
            Attempt::Retry(problem) => last_problem = problem,
            Attempt::Follow(next) => {
                tracing::info!("{label}: following Google Drive's download confirmation");
                last_problem = "followed Google Drive's download confirmation".into();
                url = next;
                followed_confirmation = true;
            }
        }
    }
    Err(download_error(
        &url,
        format!(
            "{last_problem}; gave up after {ATTEMPTS} attempts (the partial file {} is kept and resumes next time)",
            part.display()
        ),
    ))
}

/// What one request for a URL came to.
enum Attempt {
    /// The whole file is in the `.part`; its digests.
    Done(Digests),
    /// Try again (resuming what the `.part` holds) after this problem.
    Retry(String),
    /// Google Drive's confirmation page points here.
    Follow(String),
}

fn download_error(url: &str, message: String) -> Error {
    Error::Download {
        url: url.to_string(),
        message,
    }
}

/// One request: resume (or restart) the `.part`, refuse or follow an HTML page, append the body.
fn attempt_once(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    label: &str,
    may_follow: bool,
    may_retry: bool,
) -> Result<Attempt> {
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let mut request = agent.get(url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let response = match request.call() {
        Ok(r) => r,
        Err(e) if may_retry && matches!(e, ureq::Error::Io(_) | ureq::Error::Timeout(_)) => {
            return Ok(Attempt::Retry(e.to_string()))
        }
        Err(e) => return Err(download_error(url, e.to_string())),
    };
    let content_type = header(&response, "content-type");
    let (have, total) = match resume_point(&response, url, part, label, have)? {
        Resume::At { have, total } => (have, total),
        Resume::Restart(problem) => return Ok(Attempt::Retry(problem)),
    };
    let mut reader = response.into_body().into_reader();
    let (head, dropped) = read_head(&mut reader);
    if have == 0 && looks_like_html(content_type.as_deref(), &head) {
        return html_instead_of_archive(reader, head, url, may_follow);
    }
    append_body(
        part,
        label,
        Body {
            have,
            total,
            head,
            dropped,
        },
        reader,
    )
}

fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Where a response's body starts in the file.
enum Resume {
    /// At byte `have` of a file of `total` bytes (when known).
    At { have: u64, total: Option<u64> },
    /// The `.part` was removed after this problem; start again.
    Restart(String),
}

/// Reads the status: 206 resumes at `have` (when its Content-Range agrees), 200 starts from 0,
/// 416 and a Content-Range elsewhere remove the `.part`, anything else is an error.
fn resume_point(
    response: &ureq::http::Response<ureq::Body>,
    url: &str,
    part: &Path,
    label: &str,
    have: u64,
) -> Result<Resume> {
    let length = header(response, "content-length").and_then(|v| v.parse::<u64>().ok());
    match response.status().as_u16() {
        206 => {
            let range = header(response, "content-range").unwrap_or_default();
            match parse_content_range(&range) {
                Some((start, full)) if start == have => Ok(Resume::At {
                    have,
                    total: full.or(length.map(|t| t + have)),
                }),
                _ => {
                    remove(part)?;
                    Ok(Resume::Restart(format!(
                        "unexpected Content-Range {range:?}; restarting"
                    )))
                }
            }
        }
        200 => {
            if have > 0 {
                tracing::info!("{label}: the server ignores Range requests; restarting from 0");
            }
            Ok(Resume::At {
                have: 0,
                total: length,
            })
        }
        416 => {
            remove(part)?;
            Ok(Resume::Restart(
                "the server refused to resume the partial file".into(),
            ))
        }
        status => {
            let reason = response.status().canonical_reason().unwrap_or("");
            Err(download_error(url, format!("HTTP {status} {reason}")))
        }
    }
}

/// The body's first chunk (or all of it, when shorter), so the HTML check sees the real start; and
/// the problem, when the connection dropped before it was read.
fn read_head(reader: &mut impl Read) -> (Vec<u8>, Option<String>) {
    let mut head = vec![0u8; CHUNK];
    let mut len = 0;
    let mut dropped = None;
    while len < CHUNK {
        match reader.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) => {
                dropped = Some(format!("connection dropped: {e}"));
                break;
            }
        }
    }
    head.truncate(len);
    (head, dropped)
}

/// An HTML page where an archive was expected: Google Drive's confirmation is followed (once),
/// any other page is an error that quotes it.
fn html_instead_of_archive(
    mut reader: impl Read,
    head: Vec<u8>,
    url: &str,
    may_follow: bool,
) -> Result<Attempt> {
    let mut page = head;
    let _ = reader.by_ref().take(2 << 20).read_to_end(&mut page);
    let page = String::from_utf8_lossy(&page).into_owned();
    if may_follow {
        if let Some(next) = drive_confirmation_url(&page, url) {
            return Ok(Attempt::Follow(next));
        }
    }
    Err(Error::HtmlInsteadOfArchive {
        url: url.to_string(),
        hint: page_hint(&page),
    })
}

/// A response body from byte `have` of the file: its first chunk, already read, and whether the
/// connection dropped while reading it.
struct Body {
    have: u64,
    total: Option<u64>,
    head: Vec<u8>,
    dropped: Option<String>,
}

/// Appends the body to the `.part` (hashing what it already holds first), then says whether the
/// file is whole.
fn append_body(part: &Path, label: &str, body: Body, mut reader: impl Read) -> Result<Attempt> {
    let Body {
        have,
        total,
        head,
        mut dropped,
    } = body;
    let mut hasher = StreamHasher::new();
    let mut file = if have > 0 {
        rehash(part, &mut hasher)?;
        OpenOptions::new()
            .append(true)
            .open(part)
            .map_err(|e| Error::io(part, e))?
    } else {
        File::create(part).map_err(|e| Error::io(part, e))?
    };
    let bar = bytes_bar(label, total);
    bar.set_position(have);
    let mut written = 0u64;
    let mut write = |data: &[u8], written: &mut u64| -> Result<()> {
        let remaining = total
            .map(|t| t.saturating_sub(have + *written))
            .unwrap_or(0);
        file.write_all(data)
            .map_err(|e| Error::io_writing(part, e, remaining))?;
        hasher.update(data);
        *written += data.len() as u64;
        bar.inc(data.len() as u64);
        Ok(())
    };
    write(&head, &mut written)?;
    let mut buf = vec![0u8; CHUNK];
    while dropped.is_none() {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => write(&buf[..n], &mut written)?,
            Err(e) => {
                dropped = Some(format!(
                    "connection dropped after {} bytes: {e}",
                    have + written
                ))
            }
        }
    }
    file.sync_all().map_err(|e| Error::io(part, e))?;
    bar.finish_and_clear();
    if let (None, Some(t)) = (&dropped, total) {
        if have + written < t {
            dropped = Some(format!(
                "connection closed after {} of {t} bytes",
                have + written
            ));
        }
    }
    Ok(match dropped {
        Some(problem) => Attempt::Retry(problem),
        None => Attempt::Done(hasher.finish()),
    })
}

/// Feeds the bytes already in a partial file to the hasher.
fn rehash(part: &Path, hasher: &mut StreamHasher) -> Result<()> {
    let mut file = File::open(part).map_err(|e| Error::io(part, e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(part, e))?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
    }
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// `bytes START-END/TOTAL` → (START, TOTAL if known).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

/// The page's title or first words, to say what the server sent.
fn page_hint(page: &str) -> String {
    let lower = page.to_ascii_lowercase();
    if let (Some(s), Some(e)) = (lower.find("<title>"), lower.find("</title>")) {
        if s + 7 <= e {
            return format!("its title is {:?}", page[s + 7..e].trim());
        }
    }
    let text: String = page
        .split('<')
        .filter_map(|chunk| chunk.split_once('>').map(|(_, t)| t.trim()))
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    format!("it begins {:?}", text.chars().take(120).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }

    #[test]
    fn part_names_and_hints() {
        assert_eq!(
            part_path(Path::new("/d/a.tar.gz")),
            PathBuf::from("/d/a.tar.gz.part")
        );
        assert_eq!(
            page_hint("<html><title> Quota exceeded </title></html>"),
            "its title is \"Quota exceeded\""
        );
        assert!(page_hint("<p>Sign in</p>").contains("Sign in"));
    }
}

//! Recognising an HTML page served in place of an archive (login walls, quota pages, Google Drive's
//! "can't scan this file for viruses" interstitial), and following Drive's large-file confirmation.

/// Whether a response is an HTML page: by its content type or its first bytes.
pub fn looks_like_html(content_type: Option<&str>, head: &[u8]) -> bool {
    if content_type.is_some_and(|t| t.to_ascii_lowercase().starts_with("text/html")) {
        return true;
    }
    let start: Vec<u8> = head
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take(15)
        .map(|b| b.to_ascii_lowercase())
        .collect();
    start.starts_with(b"<!doctype html")
        || start.starts_with(b"<html")
        || start.starts_with(b"<head")
}

/// The URL behind Google Drive's download confirmation page, if `page` is one.
///
/// Drive answers a large-file request with a form (`id="download-form"`, hidden inputs `id`,
/// `export`, `confirm`, `uuid`) whose submission starts the download; older pages carried a link with
/// `confirm=<token>` instead. `base` is the URL that served the page, to resolve relative links.
pub fn drive_confirmation_url(page: &str, base: &str) -> Option<String> {
    if let Some(form_at) = page.find("download-form") {
        let form_start = page[..form_at].rfind("<form")?;
        let form_end = page[form_start..].find("</form>").map(|e| form_start + e)?;
        let form = &page[form_start..form_end];
        let action = attribute(form, "action")?;
        let mut query = Vec::new();
        let mut rest = form;
        while let Some(i) = rest.find("<input") {
            let end = rest[i..].find('>').map(|e| i + e)?;
            let tag = &rest[i..end];
            if attribute(tag, "type").as_deref() == Some("hidden") {
                if let (Some(name), Some(value)) = (attribute(tag, "name"), attribute(tag, "value"))
                {
                    query.push(format!("{}={}", encode(&name), encode(&value)));
                }
            }
            rest = &rest[end..];
        }
        if !query.iter().any(|q| q.starts_with("confirm=")) {
            return None;
        }
        let sep = if action.contains('?') { '&' } else { '?' };
        return Some(format!(
            "{}{sep}{}",
            resolve(&action, base),
            query.join("&")
        ));
    }
    // Older interstitial: <a id="uc-download-link" href="/uc?export=download&amp;confirm=XYZ&amp;id=...">
    let at = page.find("confirm=")?;
    let href_start = page[..at].rfind("href=\"")? + 6;
    let href_end = page[href_start..].find('"')? + href_start;
    Some(resolve(
        &page[href_start..href_end].replace("&amp;", "&"),
        base,
    ))
}

/// The value of `name="…"` in a tag, with `&amp;` decoded.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let key = format!("{name}=\"");
    let mut search = 0;
    while let Some(found) = tag[search..].find(&key) {
        let i = search + found;
        // the attribute name must start a word (so `name=` does not match inside `filename=`)
        if i == 0 || tag.as_bytes()[i - 1].is_ascii_whitespace() {
            let start = i + key.len();
            let end = tag[start..].find('"')? + start;
            return Some(tag[start..end].replace("&amp;", "&"));
        }
        search = i + key.len();
    }
    None
}

fn resolve(link: &str, base: &str) -> String {
    if link.starts_with("http://") || link.starts_with("https://") {
        return link.to_string();
    }
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    if link.starts_with('/') {
        format!("{}{link}", &base[..host_end])
    } else {
        let dir_end = base
            .rfind('/')
            .filter(|&i| i >= host_end)
            .unwrap_or(host_end);
        format!("{}/{link}", &base[..dir_end])
    }
}

/// Percent-encodes a query component.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_html_by_type_or_content() {
        assert!(looks_like_html(
            Some("text/html; charset=utf-8"),
            b"\x1f\x8b"
        ));
        assert!(looks_like_html(None, b"\n  <!DOCTYPE html><html>"));
        assert!(looks_like_html(None, b"<HTML><body>quota exceeded"));
        assert!(!looks_like_html(
            Some("application/octet-stream"),
            b"\x1f\x8b\x08\x00"
        ));
    }

    #[test]
    fn follows_the_current_drive_form() {
        // The shape of drive.google.com's virus-scan warning page (2024–2026).
        let page = r#"<html><body><form id="download-form" action="https://drive.usercontent.google.com/download" method="get">
            <input type="submit" id="uc-download-link" value="Download anyway"/>
            <input type="hidden" name="id" value="1I3it"><input type="hidden" name="export" value="download">
            <input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="ab-12"></form></body></html>"#;
        assert_eq!(
            drive_confirmation_url(page, "https://drive.google.com/uc?export=download&id=1I3it").as_deref(),
            Some("https://drive.usercontent.google.com/download?id=1I3it&export=download&confirm=t&uuid=ab-12")
        );
    }

    #[test]
    fn follows_the_older_confirm_link_and_rejects_other_pages() {
        let page = r#"<a id="uc-download-link" href="/uc?export=download&amp;confirm=Xy_1&amp;id=abc">Download anyway</a>"#;
        assert_eq!(
            drive_confirmation_url(page, "http://127.0.0.1:8080/uc?id=abc").as_deref(),
            Some("http://127.0.0.1:8080/uc?export=download&confirm=Xy_1&id=abc")
        );
        assert_eq!(
            drive_confirmation_url("<html>Sign in to continue</html>", "http://x/y"),
            None
        );
    }
}

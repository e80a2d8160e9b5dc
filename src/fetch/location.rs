//! Where an archive can be fetched from: a public URL, or a mirror (a local folder, a `file://`
//! URL or an HTTP base URL) laid out as `<mirror>/<dataset>/<file>`.

use std::fmt;
use std::path::PathBuf;

/// A mirror given with `--mirror` or `FEWSHOT_MIRROR`.
#[derive(Debug, Clone, PartialEq)]
pub enum Mirror {
    Dir(PathBuf),
    Url(String),
}

impl Mirror {
    /// `http(s)://…` is a URL mirror; `file://…` and anything else a local folder.
    pub fn parse(text: &str) -> Mirror {
        if let Some(path) = text.strip_prefix("file://") {
            Mirror::Dir(PathBuf::from(path))
        } else if text.starts_with("http://") || text.starts_with("https://") {
            Mirror::Url(text.trim_end_matches('/').to_string())
        } else {
            Mirror::Dir(PathBuf::from(text))
        }
    }

    /// Splits `FEWSHOT_MIRROR`'s value: several mirrors are separated by whitespace or commas.
    pub fn parse_list(text: &str) -> Vec<Mirror> {
        text.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(Mirror::parse)
            .collect()
    }

    /// Where this mirror keeps `file` of `dataset`.
    pub fn locate(&self, dataset: &str, file: &str) -> Location {
        match self {
            Mirror::Dir(dir) => Location::Local(dir.join(dataset).join(file)),
            Mirror::Url(base) => Location::Http(format!("{base}/{dataset}/{file}")),
        }
    }
}

/// One place to fetch one file from.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    Local(PathBuf),
    Http(String),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Http(u) => write!(f, "{u}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_parse_and_locate() {
        assert_eq!(
            Mirror::parse("file:///srv/m").locate("omniglot", "a.zip"),
            Location::Local(PathBuf::from("/srv/m/omniglot/a.zip"))
        );
        assert_eq!(
            Mirror::parse("http://127.0.0.1:9/base/").locate("cifar-fs", "x.tar.gz"),
            Location::Http("http://127.0.0.1:9/base/cifar-fs/x.tar.gz".into())
        );
        assert_eq!(Mirror::parse_list(" a, b  c ").len(), 3);
    }
}

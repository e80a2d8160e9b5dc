//! A small HTTP/1.1 server on 127.0.0.1 for the download tests. Each path has a behaviour (serve
//! with or without Range support, cut the first response short, serve HTML, 404, Google Drive's
//! confirmation form); every request line and Range header is logged for the assertions.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

#[derive(Clone)]
pub enum Behaviour {
    /// 200, or 206 for a Range request.
    Serve(Vec<u8>),
    /// The first request gets the full Content-Length but only `cut` bytes; later ones are served
    /// (with Range support unless `ignore_range`).
    CutFirst {
        body: Vec<u8>,
        cut: usize,
        ignore_range: bool,
    },
    Html(String),
    NotFound,
    /// Drive's interstitial: the page's form leads to `/drive-download?...&confirm=t`, which serves `body`.
    DriveConfirm {
        body: Vec<u8>,
    },
}

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub range: Option<String>,
}

pub struct LoopbackServer {
    pub base: String,
    pub log: Arc<Mutex<Vec<Request>>>,
}

impl LoopbackServer {
    pub fn start(routes: Vec<(&str, Behaviour)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: Arc<HashMap<String, Behaviour>> = Arc::new(
            routes
                .into_iter()
                .map(|(p, b)| (p.to_string(), b))
                .collect(),
        );
        let log = Arc::new(Mutex::new(Vec::new()));
        let served = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
        let (log2, base2) = (log.clone(), base.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (routes, log, served, base) =
                    (routes.clone(), log2.clone(), served.clone(), base2.clone());
                thread::spawn(move || {
                    let _ = handle(stream, &routes, &log, &served, &base);
                });
            }
        });
        Self { base, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }
}

fn handle(
    stream: TcpStream,
    routes: &HashMap<String, Behaviour>,
    log: &Mutex<Vec<Request>>,
    served: &Mutex<HashMap<String, usize>>,
    base: &str,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut range = None;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let h = header.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("range") {
                    range = Some(v.trim().to_string());
                }
            }
        }
        log.lock().unwrap().push(Request {
            path: target.clone(),
            range: range.clone(),
        });
        let path = target.split('?').next().unwrap_or("").to_string();
        let nth = {
            let mut s = served.lock().unwrap();
            let n = s.entry(path.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let behaviour = if path == "/drive-download" && target.contains("confirm=t") {
            let key = target
                .split("id=")
                .nth(1)
                .unwrap_or("")
                .split('&')
                .next()
                .unwrap_or("");
            match routes.get(&format!("/uc/{key}")) {
                Some(Behaviour::DriveConfirm { body }) => Behaviour::Serve(body.clone()),
                _ => Behaviour::NotFound,
            }
        } else {
            routes.get(&path).cloned().unwrap_or(Behaviour::NotFound)
        };
        match behaviour {
            Behaviour::Serve(body) => send_body(&mut out, &body, range.as_deref(), true)?,
            Behaviour::CutFirst {
                body,
                cut,
                ignore_range,
            } => {
                if nth == 1 {
                    write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n", body.len())?;
                    out.write_all(&body[..cut])?;
                    out.flush()?;
                    return Ok(()); // drop the connection mid-body
                }
                let r = if ignore_range { None } else { range.as_deref() };
                send_body(&mut out, &body, r, true)?;
            }
            Behaviour::Html(page) => {
                write!(out, "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n{page}", page.len())?;
            }
            Behaviour::NotFound => {
                write!(
                    out,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"
                )?;
            }
            Behaviour::DriveConfirm { .. } => {
                let id = path.trim_start_matches("/uc/");
                let page = format!(
                    r#"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<form id="download-form" action="{base}/drive-download" method="get">
<input type="submit" id="uc-download-link" value="Download anyway"/>
<input type="hidden" name="id" value="{id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="0a-1b"></form></body></html>"#
                );
                write!(out, "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n{page}", page.len())?;
            }
        }
        out.flush()?;
    }
}

fn send_body(
    out: &mut TcpStream,
    body: &[u8],
    range: Option<&str>,
    _keep: bool,
) -> std::io::Result<()> {
    let start = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.parse::<usize>().ok());
    match start {
        Some(s) if s < body.len() => {
            write!(
                out,
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                body.len() - 1,
                body.len(),
                body.len() - s
            )?;
            out.write_all(&body[s..])
        }
        Some(_) => write!(
            out,
            "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\n\r\n"
        ),
        None => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                body.len()
            )?;
            out.write_all(body)
        }
    }
}

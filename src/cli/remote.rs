//! `accord status`, `accord drift` and `accord audit --server`: the
//! controller's HTTP API, printed as tables and colored diffs.

use std::io::{self, Write};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::output::{self, Style};
use super::{ApproveArgs, AuditArgs, OutputFormat, ServerArgs, ERROR, OK};
use crate::store::AuditEntry;

async fn get<T: DeserializeOwned>(
    server: &str,
    path: &str,
    query: &[(&str, String)],
) -> Result<T, String> {
    let url = format!("{}{path}", server.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .get(&url)
        .query(query)
        .send()
        .await
        .map_err(|e| {
            format!("no accord server answers at {server} ({e}); start one with `accord run`, or name it with --server")
        })?;
    let status = response.status();
    if !status.is_success() {
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let detail = body["detail"].as_str().unwrap_or("no detail");
        return Err(format!("{url}: {status}: {detail}"));
    }
    response
        .json()
        .await
        .map_err(|e| format!("{url}: unexpected response: {e}"))
}

fn fail(message: String) -> u8 {
    eprintln!("error: {message}");
    ERROR
}

pub async fn status(args: &ServerArgs, style: Style) -> u8 {
    let body: Value = match get(&args.server, "/api/v1/status", &[]).await {
        Ok(body) => body,
        Err(e) => return fail(e),
    };
    let sources = body["sources"].as_array().cloned().unwrap_or_default();
    // A health check: any source in error, or the history found tampered
    // with, makes the command fail.
    let failing =
        sources.iter().any(|s| s["state"] == "Error") || body["auditChain"]["ok"] == false;
    let code = if failing { ERROR } else { OK };
    if args.output == OutputFormat::Json {
        output::print_json(&body);
        return code;
    }
    let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let short = |v: &Value| {
        v.as_str()
            .map_or("-".to_owned(), |r| r.chars().take(12).collect())
    };
    let rows: Vec<[String; 7]> = sources
        .iter()
        .map(|s| {
            [
                text(&s["name"]),
                text(&s["type"]),
                text(&s["state"]),
                short(&s["lastAppliedRevision"]),
                text(&s["lastSuccessAt"]),
                s["counts"]["managed"].to_string(),
                text(&s["message"]),
            ]
        })
        .collect();
    let headers = [
        "SOURCE",
        "TYPE",
        "STATE",
        "REVISION",
        "LAST SUCCESS",
        "MANAGED",
        "MESSAGE",
    ];
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = io::stdout().lock();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let _ = writeln!(out, "{}", line(&headers.map(String::from)));
    for row in rows {
        let color = match row[2].as_str() {
            "Synced" => "32",
            "OutOfSync" | "Progressing" => "33",
            "Error" => "31",
            _ => "2",
        };
        let rendered = line(&row);
        // Color only the state column, after padding, so columns stay aligned.
        let state_at = rendered.find(&row[2]).unwrap_or(0);
        let (head, tail) = rendered.split_at(state_at);
        let (state, rest) = tail.split_at(row[2].len());
        let _ = writeln!(out, "{head}{}{rest}", style.paint(color, state));
    }
    if body["auditChain"]["ok"] == false {
        let problem = body["auditChain"]["problem"].as_str().unwrap_or("?");
        let _ = writeln!(
            out,
            "audit history: {}",
            style.paint("31", &format!("BROKEN: {problem}"))
        );
    }
    code
}

pub async fn drift(args: &ServerArgs, style: Style) -> u8 {
    let body: Value = match get(&args.server, "/api/v1/drift", &[]).await {
        Ok(body) => body,
        Err(e) => return fail(e),
    };
    if args.output == OutputFormat::Json {
        output::print_json(&body);
        return OK;
    }
    let items = body["items"].as_array().cloned().unwrap_or_default();
    let conflicts = body["conflicts"].as_array().cloned().unwrap_or_default();
    let mut out = io::stdout().lock();
    if items.is_empty() && conflicts.is_empty() {
        let _ = writeln!(out, "No open drift.");
    }
    for (label, color, list) in [("drift", "35", &items), ("conflict", "31", &conflicts)] {
        for item in list {
            let _ = writeln!(
                out,
                "{} {} {}/{} ({}) [{}]",
                style.paint(color, label),
                item["kind"].as_str().unwrap_or("?"),
                item["app"].as_str().unwrap_or("?"),
                item["id"].as_str().unwrap_or("?"),
                item["note"].as_str().unwrap_or(""),
                item["source"].as_str().unwrap_or("?"),
            );
            let _ = write!(
                out,
                "{}",
                style.diff(item["diff"].as_str().unwrap_or(""), "    ")
            );
        }
    }
    OK
}

pub async fn audit(server: &str, args: &AuditArgs, style: Style) -> u8 {
    let mut query = vec![("limit", args.limit.to_string())];
    if let Some(source) = &args.source_name {
        query.push(("source", source.clone()));
    }
    if let Some(kind) = args.kind {
        query.push(("kind", kind.as_str().to_owned()));
    }
    let body: Value = match get(server, "/api/v1/audit-logs", &query).await {
        Ok(body) => body,
        Err(e) => return fail(e),
    };
    let entries: Vec<AuditEntry> = match serde_json::from_value(body["entries"].clone()) {
        Ok(entries) => entries,
        Err(e) => return fail(format!("unexpected audit response: {e}")),
    };
    match args.output {
        OutputFormat::Json => output::print_json(&entries),
        OutputFormat::Text => output::print_audit(&entries, style),
    }
    OK
}

pub async fn approve(args: &ApproveArgs, default_actor: &str) -> u8 {
    let token = match &args.token_file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(token) => Some(token.trim().to_owned()),
            Err(e) => return fail(format!("cannot read {}: {e}", path.display())),
        },
        None => None,
    };
    let url = format!(
        "{}/api/v1/sources/{}/approve-deletions",
        args.server.trim_end_matches('/'),
        args.source
    );
    let body = serde_json::json!({
        "set": args.set,
        "approvedBy": args.approved_by.as_deref().unwrap_or(default_actor),
    });
    let mut request = reqwest::Client::new().post(&url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return fail(format!("cannot reach {url}: {e}")),
    };
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let detail = body["detail"].as_str().unwrap_or("no detail");
        return fail(format!("{url}: {status}: {detail}"));
    }
    println!(
        "Approved {} deletion(s) of source `{}` (set {}); it syncs now.",
        body["deletes"],
        args.source,
        body["set"].as_str().unwrap_or("?")
    );
    OK
}

//! How an event is written for each kind of receiver: a generic JSON
//! webhook signed with HMAC-SHA256, a Slack-compatible incoming webhook, and
//! Alertmanager's v2 alerts API. Pure: a body and its headers.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::conditions::{Event, EventKind, Phase};

/// The header a generic webhook's signature travels in: `sha256=<hex>`,
/// the HMAC-SHA256 of the exact body with the receiver's secret.
pub const SIGNATURE_HEADER: &str = "x-accord-signature-256";
/// The event kind, so a receiver can route before parsing.
pub const EVENT_HEADER: &str = "x-accord-event";
/// A unique id per message (the same across its retries): receivers
/// deduplicate redeliveries by it.
pub const DELIVERY_HEADER: &str = "x-accord-delivery";

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Webhook,
    Slack,
    Alertmanager,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Webhook => "webhook",
            Provider::Slack => "slack",
            Provider::Alertmanager => "alertmanager",
        }
    }
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A page of the UI that shows the event's subject, when accord knows its
/// own address.
fn link(event: &Event, base: Option<&str>) -> Option<String> {
    let base = base?.trim_end_matches('/');
    Some(match &event.source {
        Some(source) => format!("{base}/sources/{source}"),
        None => format!("{base}/audit"),
    })
}

/// The generic webhook's JSON (documented in the README): version 1.
pub fn webhook_body(event: &Event, delivery: &str, base: Option<&str>) -> Value {
    json!({
        "version": 1,
        "id": delivery,
        "event": event.kind.as_str(),
        "status": event.phase,
        "source": event.source,
        "summary": event.summary,
        "objects": event.objects,
        "diff": event.diff,
        "revision": event.revision,
        "fingerprint": event.fingerprint,
        "occurredAt": event.at,
        "link": link(event, base),
    })
}

/// Escapes the three characters Slack's mrkdwn gives meaning to.
fn slack_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack incoming webhook's message: a header line, the objects and the
/// diff summary in blocks, and the UI link.
pub fn slack_body(event: &Event, base: Option<&str>) -> Value {
    let icon = match (event.phase, event.kind) {
        (Phase::Resolved, _) | (_, EventKind::SyncRecovered) => ":white_check_mark:",
        (_, EventKind::DriftCorrected) => ":wrench:",
        _ => ":warning:",
    };
    let source = event
        .source
        .as_deref()
        .map_or_else(String::new, |s| format!(" `{}`", slack_text(s)));
    let headline = format!(
        "{icon} *{}*{source}: {}",
        event.kind.as_str(),
        slack_text(&event.summary)
    );
    let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": headline}})];
    if !event.objects.is_empty() {
        let list: Vec<String> = event
            .objects
            .iter()
            .map(|o| format!("• {}", slack_text(o)))
            .collect();
        blocks
            .push(json!({"type": "section", "text": {"type": "mrkdwn", "text": list.join("\n")}}));
    }
    if !event.diff.is_empty() {
        // A code block: Slack shows it as is; only `&<>` need escaping.
        let diff: String = event.diff.chars().take(2900).collect();
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("```{}```", slack_text(&diff))}}));
    }
    let mut context =
        vec![json!({"type": "mrkdwn", "text": format!("accord · {}", event.at.to_rfc3339())})];
    if let Some(link) = link(event, base) {
        context.push(json!({"type": "mrkdwn", "text": format!("<{link}|open in accord>")}));
    }
    blocks.push(json!({"type": "context", "elements": context}));
    json!({"text": format!("{}{}: {}", event.kind.as_str(), event.source.as_deref().map(|s| format!(" {s}")).unwrap_or_default(), event.summary), "blocks": blocks})
}

/// Alertmanager's v2 API takes a list of alerts; a resolved condition is
/// the same alert (same labels) with `endsAt` now.
pub fn alertmanager_body(event: &Event, base: Option<&str>) -> Value {
    let name = match event.kind {
        EventKind::SyncFailed | EventKind::SyncRecovered => "AccordSyncFailed",
        EventKind::InvalidRevision => "AccordInvalidRevision",
        EventKind::DriftDetected => "AccordDriftDetected",
        EventKind::DriftCorrected => "AccordDriftCorrected",
        EventKind::Conflict => "AccordConflict",
        EventKind::DeletionRefused => "AccordDeletionRefused",
        EventKind::AuditChainBroken => "AccordAuditChainBroken",
    };
    let severity = match event.kind {
        EventKind::AuditChainBroken | EventKind::DeletionRefused => "critical",
        EventKind::DriftCorrected => "info",
        _ => "warning",
    };
    let mut labels = json!({
        "alertname": name,
        "severity": severity,
        "fingerprint": event.fingerprint,
    });
    if let Some(source) = &event.source {
        labels["source"] = json!(source);
    }
    let mut description = event.objects.join("\n");
    if !event.diff.is_empty() {
        description.push_str("\n\n");
        description.push_str(&event.diff);
    }
    let mut alert = json!({
        "labels": labels,
        "annotations": {"summary": event.summary, "description": description},
        "startsAt": event.at,
    });
    if let Some(link) = link(event, base) {
        alert["generatorURL"] = json!(link);
    }
    // A one-off event (drift corrected) ends as it starts.
    if event.phase == Phase::Resolved || event.kind == EventKind::DriftCorrected {
        alert["endsAt"] = json!(event.at);
    }
    json!([alert])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_the_hmac_of_the_exact_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn slack_text_escapes_what_mrkdwn_reads() {
        assert_eq!(slack_text("<a&b>"), "&lt;a&amp;b&gt;");
    }
}

//! The server gauges the soak follows, scraped from Prometheus endpoints:
//! the outbox backlog and the relay's lag per context, and the SQLite WAL
//! size per store. Each is optional: a server that does not expose it shows
//! `-`.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Rows in a context's outbox not yet published.
pub const OUTBOX_PENDING: &str = "mercato_outbox_pending";
/// Age of the oldest unpublished outbox row of a context, in seconds.
pub const OUTBOX_LAG: &str = "mercato_outbox_lag_seconds";
/// Size of a store's SQLite write-ahead log, in bytes.
pub const WAL_BYTES: &str = "mercato_store_wal_bytes";

const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);

/// One sample of the text exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses Prometheus text exposition; lines it cannot read are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after_brace)?;
        labels = parsed;
        rest = remaining;
    }
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `k="v",k2="v2"}` → the pairs and what follows the closing brace.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_owned();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()? {
                    (_, 'n') => value.push('\n'),
                    (_, other) => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.push((key, value));
        s = &s[end + 1..];
    }
}

/// The followed gauges, each by its label value; the largest value when
/// several endpoints report the same label (replicas of one context).
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    pub pending: BTreeMap<String, f64>,
    pub lag: BTreeMap<String, f64>,
    pub wal: BTreeMap<String, f64>,
    /// Endpoints that answered 200.
    pub reachable: usize,
    pub endpoints: usize,
}

impl Gauges {
    pub fn from_samples(samples: &[Sample]) -> Gauges {
        let mut g = Gauges::default();
        g.add(samples);
        g
    }

    fn add(&mut self, samples: &[Sample]) {
        for s in samples {
            let (map, label) = match s.name.as_str() {
                OUTBOX_PENDING => (&mut self.pending, "context"),
                OUTBOX_LAG => (&mut self.lag, "context"),
                WAL_BYTES => (&mut self.wal, "store"),
                _ => continue,
            };
            let key = s.label(label).unwrap_or("?").to_owned();
            let entry = map.entry(key).or_insert(s.value);
            if s.value > *entry {
                *entry = s.value;
            }
        }
    }

    /// Whether any endpoint exposes the outbox backlog.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn pending_total(&self) -> f64 {
        self.pending.values().sum()
    }

    /// `outbox catalog=3 orders=0 | lag catalog=0.3s | wal catalog=4.1MB`,
    /// with `-` for a gauge no endpoint exposes.
    pub fn describe(&self) -> String {
        let reach = if self.reachable < self.endpoints {
            format!(
                " | metrics {}/{} endpoints answered",
                self.reachable, self.endpoints
            )
        } else {
            String::new()
        };
        format!(
            "outbox {} | lag {} | wal {}{reach}",
            list(&self.pending, |v| format!("{v:.0}")),
            list(&self.lag, |v| format!("{v:.1}s")),
            list(&self.wal, bytes),
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "outbox_pending": to_map(&self.pending),
            "outbox_lag_seconds": to_map(&self.lag),
            "wal_bytes": to_map(&self.wal),
            "endpoints_answered": self.reachable,
            "endpoints": self.endpoints,
        })
    }
}

fn to_map(m: &BTreeMap<String, f64>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect::<Map<_, _>>(),
    )
}

fn list(m: &BTreeMap<String, f64>, fmt: impl Fn(f64) -> String) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={}", fmt(*v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `512B`, `4.1MB`.
pub fn bytes(v: f64) -> String {
    if v >= 1024.0 * 1024.0 {
        format!("{:.1}MB", v / (1024.0 * 1024.0))
    } else if v >= 1024.0 {
        format!("{:.1}KB", v / 1024.0)
    } else {
        format!("{v:.0}B")
    }
}

/// Scrapes every endpoint, concurrently, each within a few seconds.
pub async fn scrape(client: &reqwest::Client, urls: &[String]) -> Gauges {
    let bodies = futures::future::join_all(urls.iter().map(|url| async move {
        let resp = client.get(url).timeout(SCRAPE_TIMEOUT).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.text().await.ok()
    }))
    .await;
    let mut g = Gauges {
        endpoints: urls.len(),
        ..Gauges::default()
    };
    for body in bodies.into_iter().flatten() {
        g.reachable += 1;
        g.add(&parse(&body));
    }
    g
}

/// The largest value of each gauge over the run.
#[derive(Debug, Clone, Default)]
pub struct Maxima {
    pub pending: BTreeMap<String, f64>,
    pub lag: BTreeMap<String, f64>,
    pub wal: BTreeMap<String, f64>,
    pub scrapes: u64,
}

impl Maxima {
    pub fn update(&mut self, g: &Gauges) {
        self.scrapes += 1;
        for (into, from) in [
            (&mut self.pending, &g.pending),
            (&mut self.lag, &g.lag),
            (&mut self.wal, &g.wal),
        ] {
            for (k, v) in from {
                let e = into.entry(k.clone()).or_insert(*v);
                if *v > *e {
                    *e = *v;
                }
            }
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "max outbox backlog {} | max relay lag {} | max WAL {}",
            list(&self.pending, |v| format!("{v:.0}")),
            list(&self.lag, |v| format!("{v:.1}s")),
            list(&self.wal, bytes),
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "outbox_pending": to_map(&self.pending),
            "outbox_lag_seconds": to_map(&self.lag),
            "wal_bytes": to_map(&self.wal),
            "scrapes": self.scrapes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP mercato_outbox_pending Unpublished outbox rows.
# TYPE mercato_outbox_pending gauge
mercato_outbox_pending{context="catalog"} 12
mercato_outbox_pending{context="orders"} 0
mercato_outbox_lag_seconds{context="catalog"} 0.3
mercato_store_wal_bytes{store="catalog",path="a \"b\" c"} 4194304
mercato_http_requests_total{method="GET",route="/api/v1/products/{id}",status="200"} 41 1700000000
process_start_time_seconds 1.7e9
up +Inf
broken{context="x" 1
"#;

    #[test]
    fn parses_the_text_format() {
        let s = parse(TEXT);
        assert_eq!(s.len(), 7);
        assert_eq!(s[0].name, OUTBOX_PENDING);
        assert_eq!(s[0].label("context"), Some("catalog"));
        assert_eq!(s[0].value, 12.0);
        assert_eq!(s[3].label("path"), Some("a \"b\" c"));
        assert_eq!(s[4].label("route"), Some("/api/v1/products/{id}"));
        assert_eq!(s[4].value, 41.0);
        assert_eq!(s[5].value, 1.7e9);
        assert!(s[6].value.is_infinite());
    }

    #[test]
    fn gauges_keep_the_largest_per_label_and_show_dashes_when_absent() {
        let mut samples = parse(TEXT);
        samples.extend(parse("mercato_outbox_pending{context=\"catalog\"} 3\n"));
        let g = Gauges::from_samples(&samples);
        assert_eq!(g.pending.get("catalog"), Some(&12.0));
        assert_eq!(g.pending_total(), 12.0);
        assert_eq!(
            g.describe(),
            "outbox catalog=12 orders=0 | lag catalog=0.3s | wal catalog=4.0MB"
        );
        let none = Gauges::from_samples(&parse("process_start_time_seconds 1\n"));
        assert!(!none.has_pending());
        assert_eq!(none.describe(), "outbox - | lag - | wal -");
        let mut m = Maxima::default();
        m.update(&g);
        m.update(&Gauges::from_samples(&parse(
            "mercato_outbox_lag_seconds{context=\"catalog\"} 2.5\n",
        )));
        assert_eq!(m.lag.get("catalog"), Some(&2.5));
        assert_eq!(m.scrapes, 2);
    }
}

//! MQTT topic names, topic filters and the `{group}`/`{index}`/`{shard}` patterns that produce
//! them.

/// Placeholders a client-id or topic pattern may use.
pub const PLACEHOLDERS: [&str; 3] = ["{group}", "{index}", "{shard}"];

/// The placeholder of the shard that runs a device (0 in an unsharded run): the one placeholder
/// an observer's filter may use, so that each shard's observers hear only its own devices.
pub const SHARD: &str = "{shard}";

/// Render a pattern for one device, run by shard `shard`.
pub fn render(pattern: &str, group: &str, index: u32, shard: u32) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        if let Some(t) = tail.strip_prefix("{group}") {
            out.push_str(group);
            rest = t;
        } else if let Some(t) = tail.strip_prefix("{index}") {
            push_u32(&mut out, index);
            rest = t;
        } else if let Some(t) = tail.strip_prefix(SHARD) {
            push_u32(&mut out, shard);
            rest = t;
        } else {
            out.push('{');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Render an observer's filter for shard `shard`: `{shard}` is its only placeholder.
pub fn render_filter(filter: &str, shard: u32) -> String {
    if filter.contains(SHARD) {
        filter.replace(SHARD, &shard.to_string())
    } else {
        filter.to_string()
    }
}

fn push_u32(out: &mut String, mut v: u32) {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for b in &buf[i..] {
        out.push(char::from(*b));
    }
}

/// The first `{...}` in `pattern` that is not a known placeholder, if any.
pub fn unknown_placeholder(pattern: &str) -> Option<&str> {
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        let tail = &rest[start..];
        match tail.find('}') {
            Some(end) => {
                let candidate = &tail[..=end];
                if !PLACEHOLDERS.contains(&candidate) {
                    return Some(candidate);
                }
                rest = &tail[end + 1..];
            }
            None => return Some(tail),
        }
    }
    None
}

/// Why a topic name cannot be published to, if it cannot.
pub fn topic_name_problem(topic: &str) -> Option<&'static str> {
    if topic.is_empty() {
        Some("a topic name must not be empty")
    } else if topic.contains(['+', '#']) {
        Some("a topic name must not contain the wildcards '+' or '#'")
    } else if topic.starts_with('$') {
        Some(
            "topics starting with '$' belong to the broker ($SYS/...): devices cannot publish \
             there, and an observer would receive the broker's own messages",
        )
    } else if topic.contains('\0') {
        Some("a topic name must not contain NUL")
    } else if topic.len() > 65_535 {
        Some("a topic name must be at most 65535 bytes")
    } else {
        None
    }
}

/// A shared subscription's group name and the filter it shares (`$share/{name}/{filter}`),
/// or None for an ordinary filter.
pub fn shared(filter: &str) -> Option<(&str, &str)> {
    filter.strip_prefix("$share/")?.split_once('/')
}

/// Why a topic filter (ordinary or shared) is malformed, if it is.
pub fn filter_problem(filter: &str) -> Option<&'static str> {
    let filter = if filter.starts_with("$share/") {
        match shared(filter) {
            Some((name, inner))
                if !name.is_empty() && !name.contains(['+', '#']) && !inner.is_empty() =>
            {
                inner
            }
            _ => return Some(
                "a shared subscription is \"$share/<name>/<filter>\", the name without wildcards",
            ),
        }
    } else {
        filter
    };
    if filter.is_empty() {
        return Some("a topic filter must not be empty");
    }
    if filter.len() > 65_535 {
        return Some("a topic filter must be at most 65535 bytes");
    }
    if filter.starts_with('$') {
        return Some(
            "filters starting with '$' match the broker's own topics ($SYS/...), never a \
             device's",
        );
    }
    if filter.contains('\0') {
        return Some("a topic filter must not contain NUL");
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Some("'#' must be a whole level and the last one (e.g. \"fleet/#\")");
        }
        if level.contains('+') && *level != "+" {
            return Some("'+' must be a whole level (e.g. \"fleet/+/temp\")");
        }
    }
    None
}

/// Whether `filter` (well formed) matches `topic` (a topic name), per MQTT 3.1.1 section 4.7; a
/// shared subscription matches what the filter it shares matches.
pub fn matches(filter: &str, topic: &str) -> bool {
    let filter = shared(filter).map_or(filter, |(_, f)| f);
    // Topics starting with '$' are not matched by filters starting with a wildcard.
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_placeholders_and_leaves_other_braces() {
        assert_eq!(render("s-{group}-{index}", "temp", 42, 0), "s-temp-42");
        assert_eq!(render("a/{index}/{index}", "g", 0, 0), "a/0/0");
        assert_eq!(render("x{y", "g", 1, 0), "x{y");
        assert_eq!(render("n{index}", "g", u32::MAX, 0), "n4294967295");
        assert_eq!(render("f/{shard}/{group}/{index}", "g", 7, 3), "f/3/g/7");
        assert_eq!(render_filter("f/{shard}/#", 12), "f/12/#");
    }

    #[test]
    fn finds_unknown_placeholders() {
        assert_eq!(unknown_placeholder("a/{index}/{group}"), None);
        assert_eq!(unknown_placeholder("a/{idx}"), Some("{idx}"));
        assert_eq!(unknown_placeholder("a/{index"), Some("{index"));
    }

    #[test]
    fn filter_matching_follows_the_mqtt_rules() {
        assert!(matches("fleet/#", "fleet/a/b"));
        assert!(matches("fleet/#", "fleet"));
        assert!(matches("fleet/+/t", "fleet/a/t"));
        assert!(!matches("fleet/+/t", "fleet/a/b/t"));
        assert!(!matches("fleet/+", "fleet"));
        assert!(matches("#", "a"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(matches("$share/g/fleet/+", "fleet/a"));
        assert!(!matches("$share/g/fleet/+", "fleet/a/b"));
    }

    #[test]
    fn malformed_filters_are_named() {
        assert!(filter_problem("fleet/#/x").is_some());
        assert!(filter_problem("fleet/a+").is_some());
        assert!(filter_problem("").is_some());
        assert!(filter_problem("fleet/+/#").is_none());
        assert!(filter_problem("$share/g/fleet/#").is_none());
        assert!(filter_problem("$share//fleet/#").is_some());
        assert!(filter_problem("$share/g").is_some());
        assert!(filter_problem("$share/g/a+").is_some());
        assert!(topic_name_problem("fleet/+").is_some());
        assert!(topic_name_problem("fleet/1").is_none());
    }
}

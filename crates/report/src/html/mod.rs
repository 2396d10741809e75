//! The HTML report: one self-contained page (scripts, styles and data inline; its Content
//! Security Policy lets it load nothing) drawn from a report, optionally against a baseline.
//! The charts are uPlot's (vendored in `vendor/`, MIT); the page's own script is `page.js`.

use serde::Serialize;

pub mod search;

use crate::Report;
use fleetbench_metrics::hist::LatencyHistogram;
use fleetbench_metrics::hlog::Distribution;

const PAGE: &str = include_str!("page.html");
const PAGE_JS: &str = include_str!("page.js");
const PAGE_CSS: &str = include_str!("page.css");
const UPLOT_JS: &str = include_str!("vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("vendor/uPlot.min.css");

/// Why a page could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HtmlError {
    #[error("the report's data does not serialise: {0}")]
    Data(#[from] serde_json::Error),
}

/// Latency at rising percentiles: (quantile, microseconds), the last the maximum.
type Spectrum = Vec<(f64, u64)>;

#[derive(Serialize)]
struct Spectra {
    from_intended: Spectrum,
    from_send: Spectrum,
}

#[derive(Serialize)]
struct SpectrumPair {
    now: Option<Spectra>,
    baseline: Option<Spectra>,
}

#[derive(Serialize)]
struct PageData<'a> {
    report: &'a Report,
    baseline: Option<&'a Report>,
    spectrum: SpectrumPair,
    comparison: Option<crate::compare::Comparison>,
}

/// The page of `report`, with `baseline` overlaid and compared when given.
pub fn render(report: &Report, baseline: Option<&Report>) -> Result<String, HtmlError> {
    let data = PageData {
        report,
        baseline,
        spectrum: SpectrumPair {
            now: spectra(report),
            baseline: baseline.and_then(spectra),
        },
        comparison: baseline.map(|old| {
            crate::compare::compare(old, report, &crate::compare::tolerances_of(report))
        }),
    };
    // Inside a <script> element only "</" could end it early; JSON allows "\u003c" anywhere a
    // "<" stands in a string (and it stands nowhere else).
    let json = serde_json::to_string(&data)?.replace('<', "\\u003c");
    let title = format!(
        "fleetbench {}: {}",
        escape(report.scenario_name()),
        report.verdict.label()
    );
    // One pass over the template: a placeholder's text never gets searched again.
    let mut out = String::with_capacity(PAGE.len() + UPLOT_JS.len() + json.len() + 16_384);
    let mut rest = PAGE;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        let Some(len) = rest[at..].find("}}") else {
            break;
        };
        let fill = match &rest[at + 2..at + len] {
            "TITLE" => title.as_str(),
            "VERSION" => report.environment.fleetbench_version.as_str(),
            "UPLOT_CSS" => UPLOT_CSS,
            "PAGE_CSS" => PAGE_CSS,
            "UPLOT_JS" => UPLOT_JS,
            "PAGE_JS" => PAGE_JS,
            "DATA" => json.as_str(),
            _ => "",
        };
        out.push_str(fill);
        rest = &rest[at + len + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The whole-run distributions' spectra, when the report carries its histograms.
fn spectra(r: &Report) -> Option<Spectra> {
    let decoded = r.histograms.as_ref()?.decode().ok()?;
    let of = |d: Distribution| {
        decoded
            .iter()
            .find(|(k, _)| *k == d)
            .map_or_else(Vec::new, |(_, h)| spectrum(h))
    };
    Some(Spectra {
        from_intended: of(Distribution::FromIntended),
        from_send: of(Distribution::FromSend),
    })
}

/// Latency at quantiles 1 - 10^(-k/8) as far as the values reach (a quantile needs a value
/// beyond it), then the maximum: the percentile spectrum HdrHistogram plots.
fn spectrum(h: &LatencyHistogram) -> Spectrum {
    let n = h.count();
    if n == 0 {
        return Vec::new();
    }
    let mut out: Spectrum = (0..=48)
        .map(|k| 1.0 - 10f64.powf(-f64::from(k) / 8.0))
        .take_while(|q| (1.0 - q) * n as f64 >= 1.0)
        .map(|q| (q, h.quantile_us(q)))
        .collect();
    out.push((1.0, h.max_us()));
    out
}

/// Text for HTML: the five characters that mean something there, escaped.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_whole_loads_nothing_and_its_data_cannot_end_its_script() {
        let mut r = crate::fixture::report(400, 900, 0, 1_000.0);
        r.findings = vec!["a finding with </script><script>alert(1)</script> in it".into()];
        let page = render(&r, None).expect("page");
        assert!(!page.contains("{{"), "every placeholder filled");
        // The finding's text is in the data, unable to close the element.
        let own = PAGE.matches("</script>").count();
        assert_eq!(
            page.matches("</script>").count(),
            own,
            "only the page's own scripts end"
        );
        assert!(page.contains("\\u003c/script>"));
        for attr in ["src=\"http", "href=\"http", "src='http", "@import"] {
            assert!(!page.contains(attr), "{attr} in the page");
        }
        assert!(page.contains("Content-Security-Policy"));
    }

    #[test]
    fn the_spectrum_reaches_as_far_as_the_values_and_ends_at_the_max() {
        let mut h = LatencyHistogram::new();
        for us in 1..=1_000 {
            h.record_us(us);
        }
        let s = spectrum(&h);
        // 1,000 values reach the 99.9th percentile, not further; the maximum closes it.
        let last_q = s[s.len() - 2].0;
        assert!((0.999..0.9995).contains(&last_q), "{s:?}");
        assert_eq!(s.last().map(|p| p.1), Some(h.max_us()));
        assert!(s.windows(2).all(|w| w[0].1 <= w[1].1), "rising: {s:?}");
    }
}

//! HdrHistogram interval logs (`.hlog`): every latency distribution of a run, one interval per
//! snapshot tick, lossless, in the format HdrHistogram's own tools read (`HistogramLogProcessor`,
//! HdrHistogramVisualizer, the Rust, Go and Python libraries).
//!
//! Values are microseconds. Each interval line carries a tag naming the distribution (see
//! [`Distribution`]); timestamps are seconds since the run's start (the log's `BaseTime`).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::V2DeflateSerializer;

use crate::hist::LatencyHistogram;

/// The distributions a run records, by the tag their intervals carry in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Distribution {
    FromIntended,
    FromSend,
    Puback,
    Connect,
}

impl Distribution {
    pub const ALL: [Distribution; 4] = [
        Distribution::FromIntended,
        Distribution::FromSend,
        Distribution::Puback,
        Distribution::Connect,
    ];

    pub fn tag(self) -> &'static str {
        match self {
            Distribution::FromIntended => "from_intended",
            Distribution::FromSend => "from_send",
            Distribution::Puback => "puback",
            Distribution::Connect => "connect",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Distribution> {
        Distribution::ALL.into_iter().find(|m| m.tag() == tag)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HlogError {
    #[error("writing the interval log: {0}")]
    Write(String),
    #[error("interval log: not parseable at byte {offset}")]
    Parse { offset: usize },
    #[error("interval log: interval {index} holds no valid histogram: {detail}")]
    Histogram { index: usize, detail: String },
}

/// The interval lines of a run so far, already encoded: a tick costs one serialization per
/// distribution. The lines go to an unnamed temporary file as they come (memory, only when no
/// file can be made), so that a run of any length holds none of them in memory.
pub struct IntervalLog {
    spool: Spool,
    /// The line being encoded.
    line: Vec<u8>,
    intervals: usize,
    serializer: V2DeflateSerializer,
}

/// Where the lines are kept.
enum Spool {
    File { file: std::fs::File, len: u64 },
    Memory(Vec<u8>),
}

impl Spool {
    fn new() -> Spool {
        match tempfile::tempfile() {
            Ok(file) => Spool::File { file, len: 0 },
            Err(_) => Spool::Memory(Vec::new()),
        }
    }

    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Spool::File { file, len } => {
                file.write_all(bytes)?;
                *len += bytes.len() as u64;
                Ok(())
            }
            Spool::Memory(v) => {
                v.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    fn len(&self) -> u64 {
        match self {
            Spool::File { len, .. } => *len,
            Spool::Memory(v) => v.len() as u64,
        }
    }

    /// Every byte kept, to `out`, a chunk at a time.
    fn copy_to<W: Write>(&self, out: &mut W) -> std::io::Result<()> {
        match self {
            Spool::Memory(v) => out.write_all(v),
            Spool::File { file, len } => {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; 64 * 1024];
                let mut at = 0u64;
                while at < *len {
                    let want = buf.len().min((*len - at) as usize);
                    let n = file.read_at(&mut buf[..want], at)?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    out.write_all(&buf[..n])?;
                    at += n as u64;
                }
                Ok(())
            }
        }
    }

    /// The lines kept, one at a time, each with its newline (the interval log's parser
    /// needs it). The file is read at positions, so its write position stays where it was.
    fn lines(&self) -> impl Iterator<Item = std::io::Result<Vec<u8>>> + '_ {
        use std::io::BufRead;
        let reader: Box<dyn BufRead + '_> = match self {
            Spool::Memory(v) => Box::new(v.as_slice()),
            Spool::File { file, len } => Box::new(std::io::BufReader::new(At {
                file,
                at: 0,
                end: *len,
            })),
        };
        let mut reader = Some(reader);
        std::iter::from_fn(move || {
            let r = reader.as_mut()?;
            let mut line = Vec::new();
            match r.read_until(b'\n', &mut line) {
                Ok(0) => None,
                Ok(_) => Some(Ok(line)),
                Err(e) => {
                    reader = None;
                    Some(Err(e))
                }
            }
        })
    }
}

/// A file read from `at` up to `end` by position.
struct At<'a> {
    file: &'a std::fs::File,
    at: u64,
    end: u64,
}

impl std::io::Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let want = buf
            .len()
            .min(usize::try_from(self.end - self.at).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

impl Default for IntervalLog {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for IntervalLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "IntervalLog({} intervals, {} bytes)",
            self.intervals,
            self.spool.len()
        )
    }
}

impl IntervalLog {
    pub fn new() -> Self {
        IntervalLog {
            spool: Spool::new(),
            line: Vec::new(),
            intervals: 0,
            serializer: V2DeflateSerializer::new(),
        }
    }

    /// Append one interval of one distribution. `start` is measured from the run's start.
    pub fn push(
        &mut self,
        metric: Distribution,
        start: Duration,
        length: Duration,
        h: &LatencyHistogram,
    ) -> Result<(), HlogError> {
        // A builder without headers writes nothing of its own: only the interval line.
        self.line.clear();
        IntervalLogWriterBuilder::new()
            .begin_log_with(&mut self.line, &mut self.serializer)
            .map_err(|e| HlogError::Write(e.to_string()))?
            .write_histogram(h.hdr(), start, length, Tag::new(metric.tag()))
            .map_err(|e| HlogError::Write(e.to_string()))?;
        self.spool
            .append(&self.line)
            .map_err(|e| HlogError::Write(e.to_string()))?;
        self.intervals += 1;
        Ok(())
    }

    /// Interval lines held (one per distribution per tick).
    pub fn len(&self) -> usize {
        self.intervals
    }

    pub fn is_empty(&self) -> bool {
        self.intervals == 0
    }

    /// The whole log: headers (start time, a legend) and every interval.
    pub fn write_to<W: Write>(
        &self,
        out: &mut W,
        started: SystemTime,
        title: &str,
    ) -> Result<(), HlogError> {
        let mut header = Vec::new();
        let mut serializer = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .add_comment(&format!("fleetbench {title}"))
            .add_comment("values in microseconds; tags: from_intended, from_send, puback, connect")
            .with_start_time(started)
            .with_base_time(started)
            .begin_log_with(&mut header, &mut serializer)
            .map_err(|e| HlogError::Write(e.to_string()))?;
        header.extend_from_slice(
            b"\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
        );
        out.write_all(&header)
            .and_then(|_| self.spool.copy_to(out))
            .map_err(|e| HlogError::Write(e.to_string()))
    }
}

impl IntervalLog {
    /// The latency intervals (from intended and from send) read back line by line, in
    /// order, each kept encoded (a few hundred bytes) until it is used; the intervals of a
    /// line that does not read are left out (its errors are the report's, from writing it).
    pub fn latency_intervals(&self) -> Vec<LoggedInterval> {
        let mut out = Vec::new();
        for line in self.spool.lines() {
            let Ok(line) = line else { break };
            for entry in IntervalLogIterator::new(&line).flatten() {
                let LogEntry::Interval(i) = entry else {
                    continue;
                };
                let interval = LoggedInterval::of(&i);
                if matches!(
                    interval.metric,
                    Some(Distribution::FromIntended | Distribution::FromSend)
                ) {
                    out.push(interval);
                }
            }
        }
        out
    }
}

/// One interval read back from a log, its histogram still encoded.
#[derive(Debug, Clone)]
pub struct LoggedInterval {
    pub metric: Option<Distribution>,
    pub tag: Option<String>,
    pub start: Duration,
    pub length: Duration,
    /// The histogram, V2 compressed, base64 (as the log line holds it).
    encoded: String,
}

impl LoggedInterval {
    fn of(i: &hdrhistogram::serialization::interval_log::IntervalLogHistogram<'_>) -> Self {
        let tag = i.tag().map(|t| t.as_str().to_string());
        LoggedInterval {
            metric: tag.as_deref().and_then(Distribution::from_tag),
            tag,
            start: i.start_timestamp(),
            length: i.duration(),
            encoded: i.encoded_histogram().to_string(),
        }
    }

    /// An interval of `metric` holding `h` (for tests and readers of other logs).
    pub fn new(
        metric: Distribution,
        start: Duration,
        length: Duration,
        h: &LatencyHistogram,
    ) -> Self {
        LoggedInterval {
            metric: Some(metric),
            tag: Some(metric.tag().to_string()),
            start,
            length,
            encoded: h.to_base64().unwrap_or_default(),
        }
    }

    /// Its histogram, decoded (an empty one when the line held none that decodes).
    pub fn histogram(&self) -> LatencyHistogram {
        LatencyHistogram::from_base64(&self.encoded).unwrap_or_default()
    }
}

/// Read every interval of a log.
pub fn read(bytes: &[u8]) -> Result<Vec<LoggedInterval>, HlogError> {
    let mut out = Vec::new();
    for entry in IntervalLogIterator::new(bytes) {
        let entry = entry.map_err(|e| match e {
            hdrhistogram::serialization::interval_log::LogIteratorError::ParseError { offset } => {
                HlogError::Parse { offset }
            }
        })?;
        let LogEntry::Interval(i) = entry else {
            continue;
        };
        let index = out.len();
        // Every interval must decode: a damaged log is an error, not a silent gap.
        LatencyHistogram::from_base64(i.encoded_histogram()).map_err(|e| HlogError::Histogram {
            index,
            detail: e.to_string(),
        })?;
        out.push(LoggedInterval::of(&i));
    }
    Ok(out)
}

/// The whole-run distribution of every tag in a log: the sum of its intervals.
pub fn totals(intervals: &[LoggedInterval]) -> BTreeMap<Distribution, LatencyHistogram> {
    let mut out: BTreeMap<Distribution, LatencyHistogram> = BTreeMap::new();
    for i in intervals {
        if let Some(m) = i.metric {
            out.entry(m).or_default().add(&i.histogram());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_log_reads_back_interval_by_interval() {
        let mut log = IntervalLog::new();
        let tick = Duration::from_millis(250);
        let mut whole = LatencyHistogram::new();
        for t in 0..8u32 {
            let mut h = LatencyHistogram::new();
            for v in 0..=t * 100 {
                h.record_us(u64::from(100 + v * 7));
            }
            whole.add(&h);
            log.push(Distribution::FromIntended, tick * t, tick, &h)
                .expect("push");
            log.push(
                Distribution::Connect,
                tick * t,
                tick,
                &LatencyHistogram::new(),
            )
            .expect("push");
        }
        assert_eq!(log.len(), 16);
        let mut file = Vec::new();
        log.write_to(
            &mut file,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            "test",
        )
        .expect("write");
        let text = String::from_utf8(file.clone()).expect("utf-8");
        assert!(text.contains("#[StartTime: 1700000000.000"), "{text}");
        assert!(text.contains("Tag=from_intended,0.250,0.250,"), "{text}");

        let intervals = read(&file).expect("read");
        assert_eq!(intervals.len(), 16);
        // What the run reads back of its own log: the latency intervals, each whole.
        let own = log.latency_intervals();
        assert_eq!(own.len(), 8);
        assert_eq!(own[7].start, tick * 7);
        assert_eq!(own[7].histogram().count(), 701);
        assert_eq!(intervals[2].start, tick);
        assert_eq!(intervals[2].metric, Some(Distribution::FromIntended));
        let totals = totals(&intervals);
        assert_eq!(totals[&Distribution::FromIntended].hdr(), whole.hdr());
        assert_eq!(totals[&Distribution::Connect].count(), 0);
    }

    #[test]
    fn a_log_kept_in_memory_reads_back_like_one_kept_in_a_file() {
        let mut logs = [IntervalLog::new(), IntervalLog::new()];
        logs[1].spool = Spool::Memory(Vec::new());
        for log in &mut logs {
            for t in 0..3u32 {
                let mut h = LatencyHistogram::new();
                h.record_us(u64::from(10 + t));
                let at = Duration::from_secs(t.into());
                log.push(Distribution::FromSend, at, Duration::from_secs(1), &h)
                    .expect("push");
            }
            let back = log.latency_intervals();
            assert_eq!(back.len(), 3);
            assert_eq!(back[2].histogram().max_us(), 12);
        }
        assert!(matches!(logs[0].spool, Spool::File { .. }));
    }

    #[test]
    fn a_damaged_log_is_an_error_not_a_silent_gap() {
        let mut log = IntervalLog::new();
        let mut h = LatencyHistogram::new();
        h.record_us(5);
        log.push(
            Distribution::FromSend,
            Duration::ZERO,
            Duration::from_secs(1),
            &h,
        )
        .expect("push");
        let mut file = Vec::new();
        log.write_to(&mut file, SystemTime::UNIX_EPOCH, "t")
            .expect("write");
        let text = String::from_utf8(file).expect("utf-8");
        let broken = text.replace("HISTF", "HISTX");
        assert!(read(broken.as_bytes()).is_err());
    }
}

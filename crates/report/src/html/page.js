// fleetbench's HTML report: everything is drawn from the report JSON embedded in the page.
// Every figure shown from the report carries data-figure (its path in the report) and
// data-value (the number itself), so that a test can check the page against the JSON.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("data").textContent);
  var r = data.report;
  var base = data.baseline;
  var NOW = "#2563c9", BASE = "#9aa3b5", WARN = "#d08a12", BAD = "#c62f2f", GOOD = "#1f8a4c";

  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    (kids || []).forEach(function (k) {
      e.appendChild(typeof k === "string" || typeof k === "number" ? document.createTextNode(String(k)) : k);
    });
    return e;
  }
  function count(n) { return n === null || n === undefined ? "-" : Number(n).toLocaleString("en-US"); }
  function us(x) {
    if (x === null || x === undefined) return "-";
    if (x < 1000) return x + " us";
    if (x < 1e6) return (x / 1e3).toFixed(x < 1e4 ? 2 : 1) + " ms";
    return (x / 1e6).toFixed(2) + " s";
  }
  function secs(x) { return x === null || x === undefined ? "never" : x.toFixed(2) + " s"; }
  // A figure of the report: shown formatted, its number kept for checks.
  function fig(path, value, text) {
    return el("span", { "data-figure": path, "data-value": String(value) }, [text === undefined ? count(value) : text]);
  }
  function table(headers, rows, cls) {
    var t = el("table", cls ? { "class": cls } : {});
    t.appendChild(el("tr", {}, headers.map(function (h) { return el("th", {}, [h]); })));
    rows.forEach(function (row) {
      t.appendChild(el("tr", {}, row.map(function (c) {
        if (c && c.cls) return el("td", { "class": c.cls }, [c.v]);
        return el("td", {}, [c === null || c === undefined ? "-" : c]);
      })));
    });
    return t;
  }
  function section(title, kids) {
    var s = el("section", {}, [el("h2", {}, [title])].concat(kids));
    document.getElementById("main").appendChild(s);
    return s;
  }

  // Header: what ran, where, and the verdict.
  var name = (r.scenario && r.scenario.name) || "?";
  var head = document.getElementById("head");
  head.appendChild(el("h1", {}, [name, el("span", { "class": "verdict " + r.verdict, "data-figure": "verdict", "data-value": r.verdict }, [r.verdict.toUpperCase()])]));
  var started = new Date(r.run.started_unix_s * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
  // Text of the user's (the description, broker names) is isolated, so that a right-to-left
  // override in it cannot turn the rest of the line around.
  function user(text) { return el("bdi", {}, [text]); }
  head.appendChild(el("div", { "class": "sub" }, [
    user(r.scenario.description || ""), " · broker ", user(r.run.broker), " · shard " + r.run.shard +
    " · started " + started + " · ran " + r.run.elapsed_s.toFixed(1) + " s"
  ].concat(base ? [" · baseline: ", user(base.run.broker), ", started " + new Date(base.run.started_unix_s * 1000).toISOString().slice(0, 19)] : [])));

  // The verdict: each expectation.
  section("Expectations", [table(["check", "observed", "", "limit", ""], r.expectations.map(function (e) {
    return [e.name, fig("expectations." + e.name, e.observed, String(+e.observed.toPrecision(6))), e.comparison || "", String(e.limit),
      { v: e.ok ? "ok" : "FAILED", cls: e.ok ? "good" : "bad" }];
  }))]);

  // The ledger: every message accounted for.
  var t = r.totals;
  var ledger = ["sent", "expected", "delivered", "lost", "in_flight", "duplicates", "reordered", "unexpected", "skipped"];
  section("Ledger", [table(["", "messages"].concat(base ? ["baseline"] : []), ledger.map(function (k) {
    var row = [k.replace("_", " "), fig("totals." + k, t[k])];
    if (base) row.push(count(base.totals[k]));
    return row;
  }), "kv")]);

  // Charts over time.
  var s = r.series || { t_s: [] };
  var bs = base && base.series && base.series.t_s.length ? base.series : null;
  var faults = r.faults || [];
  function rates(series, key) {
    var out = [];
    for (var i = 0; i < series.t_s.length; i++) {
      var dt = series.t_s[i] - (i ? series.t_s[i - 1] : 0);
      var dn = series[key][i] - (i ? series[key][i - 1] : 0);
      out.push(dt > 0 ? dn / dt : null);
    }
    return out;
  }
  function nz(v) { return v.map(function (x) { return x > 0 ? x : null; }); }
  function faultBands(u) {
    var ctx = u.ctx;
    faults.forEach(function (f) {
      var x0 = u.valToPos(f.at_s, "x", true);
      var x1 = u.valToPos(f.at_s + Math.max(f.for_s, 0.25), "x", true);
      ctx.save();
      ctx.fillStyle = "rgba(198,47,47,0.12)";
      ctx.fillRect(x0, u.bbox.top, Math.max(x1 - x0, 2), u.bbox.height);
      ctx.restore();
    });
  }
  // One chart: lines of `now` (and of the baseline, grey and dashed, on its own x values).
  function chart(title, lines, opts) {
    opts = opts || {};
    var box = el("div", { "class": "chart" }, [el("h3", {}, [title])]);
    grid.appendChild(box);
    var tables = [[s.t_s].concat(lines.map(function (l) { return l.now; }))];
    var series = [{}].concat(lines.map(function (l) { return { label: l.label, stroke: l.color, width: 1.5, spanGaps: true }; }));
    if (bs && opts.baseline !== false) {
      tables.push([bs.t_s].concat(lines.map(function (l) { return l.base || bs.t_s.map(function () { return null; }); })));
      series = series.concat(lines.map(function (l) { return { label: l.label + " (baseline)", stroke: BASE, width: 1, dash: [5, 4], spanGaps: true, show: !!l.base }; }));
    }
    var joined = tables.length > 1 ? uPlot.join(tables) : tables[0];
    var y = opts.log ? { distr: 3 } : {};
    var fmtY = opts.us ? function (u, v) { return v.map(function (x) { return x === null ? "" : us(x); }); } : undefined;
    new uPlot({
      width: Math.max(480, Math.min(580, grid.clientWidth / 2 - 16)),
      height: 240,
      series: series,
      scales: { x: { time: false }, y: y },
      axes: [{ label: "s from the ramp start" }, { size: 70, values: fmtY }],
      hooks: { drawClear: [faultBands] },
    }, joined, box);
  }
  var grid = el("div", { "class": "grid" });
  section("Over time" + (faults.length ? " (faults shaded)" : ""), [grid]);
  if (s.t_s.length) {
    chart("Rates (messages/s)", [
      { label: "publish/s", color: NOW, now: rates(s, "sent"), base: bs && rates(bs, "sent") },
      { label: "deliver/s", color: GOOD, now: rates(s, "delivered"), base: bs && rates(bs, "delivered") },
    ]);
    chart("Devices connected", [{ label: "connected", color: NOW, now: s.devices_connected, base: bs && bs.devices_connected }]);
    // p50, p99, p99.9 and max of one latency, now and in the baseline.
    [["from_intended", "Latency from intended (log)"], ["from_send", "Latency from send (log)"]].forEach(function (k) {
      var now = s[k[0]], old = bs && bs[k[0]];
      chart(k[1], [["p50", "p50_us", GOOD], ["p99", "p99_us", WARN], ["p99.9", "p999_us", BAD], ["max", "max_us", "#6b3fb0"]].map(function (p) {
        return { label: p[0], color: p[2], now: nz(now[p[1]]), base: old && nz(old[p[1]]) };
      }), { log: true, us: true });
    });
  } else {
    grid.appendChild(el("p", {}, ["This report has no time series (a report of an older fleetbench)."]));
  }

  // The latency distribution as a percentile spectrum: x is 1/(1 - q) on a log axis.
  var sp = data.spectrum;
  if (sp && sp.now && sp.now.from_intended.length) {
    var box = el("div", { "class": "chart" }, [el("h3", {}, ["Latency by percentile (log x: 90%, 99%, 99.9%, ...)"])]);
    grid.appendChild(box);
    // x strictly rising (the maximum shares the last quantile's x on a very large run).
    function pts(list) {
      var xs = [], ys = [];
      list.forEach(function (p) {
        var x = 1 / (1 - Math.min(p[0], 0.9999999));
        if (xs.length && x <= xs[xs.length - 1]) { ys[ys.length - 1] = p[1] > 0 ? p[1] : null; return; }
        xs.push(x); ys.push(p[1] > 0 ? p[1] : null);
      });
      return [xs, ys];
    }
    var tabs = [pts(sp.now.from_intended)];
    var ser = [{}, { label: "from intended", stroke: WARN, width: 2, spanGaps: true, points: { show: false } }];
    if (sp.now.from_send.length) {
      tabs.push(pts(sp.now.from_send));
      ser.push({ label: "from send", stroke: GOOD, width: 1.5, spanGaps: true, points: { show: false } });
    }
    if (sp.baseline && sp.baseline.from_intended.length) {
      tabs.push(pts(sp.baseline.from_intended));
      ser.push({ label: "from intended (baseline)", stroke: BASE, width: 1, dash: [5, 4], spanGaps: true });
    }
    var joined = uPlot.join(tabs);
    new uPlot({
      width: Math.max(480, Math.min(580, grid.clientWidth / 2 - 16)),
      height: 240,
      series: ser,
      scales: { x: { time: false, distr: 3 }, y: { distr: 3 } },
      axes: [{
        // One tick per nine: 0%, 90%, 99%, 99.9%, ...
        splits: function (u) { return [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7].filter(function (x) { return x <= u.scales.x.max * 1.0001; }); },
        values: function (u, v) { return v.map(function (x) { return x === 1 ? "0%" : (100 - 100 / x).toPrecision(8).replace(/\.?0+$/, "") + "%"; }); },
      },
             { size: 70, values: function (u, v) { return v.map(function (x) { return x === null ? "" : us(x); }); } }],
    }, joined, box);
  }

  // Latency in numbers.
  var lat = ["from_intended", "from_send", "puback", "connect"];
  section("Latency", [table(["", "count", "p50", "p90", "p99", "p99.9", "max"], lat.filter(function (k) { return r.latency[k]; }).map(function (k) {
    var l = r.latency[k];
    return [k.replace("_", " "), fig("latency." + k + ".count", l.count), fig("latency." + k + ".p50_us", l.p50_us, us(l.p50_us)),
      us(l.p90_us), fig("latency." + k + ".p99_us", l.p99_us, us(l.p99_us)), us(l.p999_us), fig("latency." + k + ".max_us", l.max_us, us(l.max_us))];
  }))]);

  // Groups (as measured; as declared for a report without them) and load phases.
  var declared = r.scenario.groups || [];
  if ((r.groups || []).length) {
    section("Device groups", [table(["group", "devices", "rate/s", "QoS", "sent", "delivered", "lost", "in flight", "duplicates"], r.groups.map(function (g, i) {
      var d = declared[i] || {};
      return [g.name, count(g.devices), d.rate === undefined ? "-" : String(d.rate), d.qos === undefined ? "-" : String(d.qos),
        fig("groups." + i + ".sent", g.sent), fig("groups." + i + ".delivered", g.delivered), fig("groups." + i + ".lost", g.lost),
        count(g.in_flight), count(g.duplicates)];
    }))]);
  } else if (declared.length) {
    section("Device groups (as the scenario declares them)", [table(["group", "devices", "rate/s", "QoS", "topic"], declared.map(function (g) {
      return [g.name, count(g.count), String(g.rate), String(g.qos), g.topic];
    }))]);
  }
  if ((r.phases || []).length) {
    section("Load phases", [table(["phase", "sent", "delivered", "p50", "p99"], r.phases.map(function (p, i) {
      var l = p.from_intended || {};
      return [p.name, fig("phases." + i + ".sent", p.sent), fig("phases." + i + ".delivered", p.delivered), us(l.p50_us), us(l.p99_us)];
    }))]);
  }
  if (faults.length) {
    section("Faults", [table(["fault", "cuts", "lowest", "recovery", "rate back", "peak c/s", "errors", "lost during", "lost after", "dup during", "dup after"], faults.map(function (f, i) {
      return [f.fault, count(f.cuts), count(f.lowest_connected) + " of " + count(f.connected_before), secs(f.recovery_s), secs(f.delivery_recovery_s),
        Math.round(f.peak_reconnects_per_s), count(f.connection_errors), fig("faults." + i + ".lost_during", f.lost_during || 0),
        fig("faults." + i + ".lost_after", f.lost_after || 0), count(f.duplicates_during), count(f.duplicates_after)];
    }))]);
  }
  if ((r.shards || []).length) {
    section("Shards", [table(["shard", "present", "verdict", "sent", "delivered", "lost"], r.shards.map(function (x) {
      return [x.shard, x.present ? "yes" : { v: "MISSING", cls: "bad" }, x.verdict || "-", count(x.sent), count(x.delivered), count(x.lost)];
    }))]);
  }

  // Findings.
  section("Findings", [(r.findings || []).length
    ? el("ul", { "class": "findings" }, r.findings.map(function (f) { return el("li", {}, [f]); }))
    : el("p", {}, ["None: nothing about the broker or the run calls for attention."])]);

  // Generator health, resources, errors, environment.
  var g = r.generator, res = r.resources;
  var health = [
    ["late sends", fig("generator.late_sends", g.late_sends)],
    ["max lag", us(g.max_lag_us)],
    ["generator cores", (g.cpu_cores || 0).toFixed(2)],
    ["broker cores", (res.cpu.broker || 0).toFixed(2)],
    ["machine busy cores", res.machine_busy_cores === null || res.machine_busy_cores === undefined ? "-" : res.machine_busy_cores.toFixed(2)],
    ["peak RSS", (res.peak_rss_bytes / 1048576).toFixed(0) + " MiB"],
    ["calibration unit", r.calibration ? r.calibration.core_round_trip_us.toFixed(2) + " us" : "-"],
    ["throughput", fig("throughput.deliver_per_s", r.throughput.deliver_per_s, r.throughput.deliver_per_s.toFixed(1) + " deliveries/s")],
  ];
  section("Generator health", [table(["", ""], health, "kv")]);
  var errs = Object.keys(r.errors || {});
  if (errs.length) {
    section("Errors", [table(["kind", "count", "latest"], errs.map(function (k) {
      return [k, fig("errors." + k, r.errors[k].count), r.errors[k].latest];
    }))]);
  }
  var env = r.environment;
  section("Environment", [table(["", ""], Object.keys(env).map(function (k) { return [k.replace(/_/g, " "), String(env[k])]; }), "kv")]);

  // The comparison with the baseline.
  var c = data.comparison;
  if (c) {
    section("Against the baseline" + (c.regressed ? " (REGRESSED)" : ""), [table(["metric", "baseline", "now", "change", "allowed", ""], c.rows.map(function (row) {
      var change = row.change === null || row.change === undefined ? "-" : (row.change * 100).toFixed(1) + "%";
      var verdict = !row.not_gated ? (row.ok ? { v: "ok", cls: "good" } : { v: "WORSE", cls: "bad" }) : "not judged";
      return [row.metric, String(+row.baseline.toPrecision(6)), String(+row.now.toPrecision(6)), change, (row.tolerance * 100).toFixed(0) + "%", verdict];
    }))]);
  }
  document.body.setAttribute("data-rendered", "ok");
})();

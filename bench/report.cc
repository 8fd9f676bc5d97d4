// Renderings of a RunResult: the summary table, JSON and a self-contained HTML page whose
// charts are inline SVG (no scripts, no network).
#include <cmath>
#include <cstdio>
#include <string>

#include "bench/bench.h"

namespace sluice::bench {
namespace {

constexpr double kPercentiles[] = {50, 90, 99, 99.9, 99.99};
constexpr const char* kPercentileNames[] = {"p50", "p90", "p99", "p99.9", "p99.99"};

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt("\\u%04x", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else if (c == '"')
      out += "&quot;";
    else
      out += c;
  }
  return out;
}

// The settings, as one line of `--name value` pairs that repeats the run.
std::string settings_line(const RunResult& r) {
  const Options& o = r.options;
  std::string s = "sluice bench " + mode_name(o.mode) + " --bootstrap " + o.bootstrap +
                  " --topic " + o.topic + " --partitions " + std::to_string(r.partitions);
  s += " --record-size-min " + std::to_string(o.record_bytes_min) + " --record-size-max " +
       std::to_string(o.record_bytes_max);
  s += " --key-distribution " + key_distribution_name(o.key_distribution);
  if (o.key_distribution != KeyDistribution::kNone) s += " --keys " + std::to_string(o.keys);
  s += " --producers " + std::to_string(o.producers) + " --consumers " +
       std::to_string(o.consumers) + " --rate " + fmt("%g", o.rate_per_s);
  s += o.records > 0 ? " --records " + std::to_string(o.records)
                     : " --duration " + fmt("%g", o.duration_s);
  s += " --warmup " + fmt("%g", o.warmup_s) + " --acks " +
       (o.acks == -1 ? std::string("all") : std::to_string(o.acks));
  s += " --compression " + o.compression + " --batch-size " + std::to_string(o.batch_bytes) +
       " --linger-ms " + std::to_string(o.linger_ms);
  s += o.client == ClientKind::kRaw ? " --client raw" : " --client library";
  return s;
}

std::string latency_name(const RunResult& r) {
  return r.options.mode == Mode::kE2e ? "end-to-end (send to receive)" : "produce (send to ack)";
}
const SideResult& latency_side(const RunResult& r) {
  return r.options.mode == Mode::kE2e ? r.consume : r.produce;
}

std::string json_side(const SideResult& side) {
  std::string s =
      "{\"records\":" + std::to_string(side.records) + ",\"bytes\":" + std::to_string(side.bytes) +
      ",\"errors\":" + std::to_string(side.errors) + ",\"seconds\":" + fmt("%.6f", side.seconds) +
      ",\"records_per_s\":" + fmt("%.3f", side.records_per_s()) +
      ",\"mb_per_s\":" + fmt("%.6f", side.mb_per_s());
  if (side.latency.count() > 0) {
    const Histogram& h = side.latency;
    s += ",\"latency_us\":{\"count\":" + std::to_string(h.count()) +
         ",\"mean\":" + fmt("%.3f", h.mean()) + ",\"min\":" + std::to_string(h.min());
    for (size_t i = 0; i < std::size(kPercentiles); ++i) {
      s += ",\"" + std::string(kPercentileNames[i]) +
           "\":" + std::to_string(h.value_at_percentile(kPercentiles[i]));
    }
    s += ",\"max\":" + std::to_string(h.max()) + "}";
  }
  return s + "}";
}

// ---- SVG ----------------------------------------------------------------------------------

constexpr double kWidth = 760, kHeight = 300, kLeft = 70, kRight = 20, kTop = 20, kBottom = 45;

// A "nice" axis maximum at or above v: 1, 2 or 5 times a power of ten.
double nice_max(double v) {
  if (v <= 0) return 1;
  const double p = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * p >= v) return m * p;
  }
  return 10 * p;
}

struct Series {
  std::string name;
  std::string color;
  std::vector<std::pair<double, double>> points;  // x in [0,1], y in data units
};

std::string svg_chart(const std::string& title, const std::string& y_label,
                      const std::vector<Series>& series, const std::vector<std::string>& x_ticks,
                      double warmup_fraction) {
  double y_max = 0;
  for (const auto& s : series) {
    for (const auto& p : s.points) y_max = std::max(y_max, p.second);
  }
  y_max = nice_max(y_max);
  const double w = kWidth - kLeft - kRight, h = kHeight - kTop - kBottom;
  auto X = [&](double x) { return kLeft + x * w; };
  auto Y = [&](double y) { return kTop + h - y / y_max * h; };
  std::string out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + fmt("%g", kWidth) +
                    "\" height=\"" + fmt("%g", kHeight) +
                    "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  out += "<title>" + html_escape(title) + "</title>\n";
  if (warmup_fraction > 0) {
    out += "<rect x=\"" + fmt("%.1f", X(0)) + "\" y=\"" + fmt("%.1f", kTop) + "\" width=\"" +
           fmt("%.1f", warmup_fraction * w) + "\" height=\"" + fmt("%.1f", h) +
           "\" fill=\"#eee\"/><text x=\"" + fmt("%.1f", X(0) + 4) + "\" y=\"" +
           fmt("%.1f", kTop + 12) + "\" fill=\"#888\">warm-up</text>\n";
  }
  for (int i = 0; i <= 4; ++i) {
    const double v = y_max * i / 4;
    out += "<line x1=\"" + fmt("%.1f", X(0)) + "\" x2=\"" + fmt("%.1f", X(1)) + "\" y1=\"" +
           fmt("%.1f", Y(v)) + "\" y2=\"" + fmt("%.1f", Y(v)) + "\" stroke=\"#ddd\"/>";
    out += "<text x=\"" + fmt("%.1f", kLeft - 6) + "\" y=\"" + fmt("%.1f", Y(v) + 4) +
           "\" text-anchor=\"end\">" + fmt("%g", v) + "</text>\n";
  }
  for (size_t i = 0; i < x_ticks.size(); ++i) {
    const double x = x_ticks.size() > 1 ? static_cast<double>(i) / (x_ticks.size() - 1) : 0;
    out += "<text x=\"" + fmt("%.1f", X(x)) + "\" y=\"" + fmt("%.1f", kTop + h + 16) +
           "\" text-anchor=\"middle\">" + html_escape(x_ticks[i]) + "</text>\n";
  }
  out += "<text x=\"14\" y=\"" + fmt("%.1f", kTop + h / 2) + "\" transform=\"rotate(-90 14 " +
         fmt("%.1f", kTop + h / 2) + ")\" text-anchor=\"middle\">" + html_escape(y_label) +
         "</text>\n";
  double legend_x = kLeft;
  for (const auto& s : series) {
    std::string path;
    for (const auto& p : s.points) {
      path +=
          (path.empty() ? "M" : " L") + fmt("%.1f", X(p.first)) + "," + fmt("%.1f", Y(p.second));
    }
    out +=
        "<path d=\"" + path + "\" fill=\"none\" stroke=\"" + s.color + "\" stroke-width=\"2\"/>\n";
    out += "<rect x=\"" + fmt("%.1f", legend_x) + "\" y=\"" + fmt("%.1f", kHeight - 14) +
           "\" width=\"10\" height=\"10\" fill=\"" + s.color + "\"/><text x=\"" +
           fmt("%.1f", legend_x + 14) + "\" y=\"" + fmt("%.1f", kHeight - 5) + "\">" +
           html_escape(s.name) + "</text>\n";
    legend_x += 30 + 7.0 * static_cast<double>(s.name.size());
  }
  return out + "</svg>\n";
}

std::string throughput_chart(const RunResult& r) {
  if (r.samples.empty()) return "<p>No samples (the run was shorter than a second).</p>\n";
  const double t_max = r.samples.back().t_s;
  Series produce{"produce MB/s", "#1f77b4", {}}, consume{"consume MB/s", "#d62728", {}};
  double warmup_end = 0;
  for (const Sample& x : r.samples) {
    produce.points.push_back({x.t_s / t_max, x.produce_mb_per_s});
    consume.points.push_back({x.t_s / t_max, x.consume_mb_per_s});
    if (x.warmup) warmup_end = x.t_s / t_max;
  }
  std::vector<Series> series;
  if (r.produce.active) series.push_back(produce);
  if (r.consume.active) series.push_back(consume);
  std::vector<std::string> ticks;
  for (int i = 0; i <= 5; ++i) ticks.push_back(fmt("%.0f s", t_max * i / 5));
  return svg_chart("Throughput over time", "MB/s (values)", series, ticks, warmup_end);
}

// Latency against percentile on the usual HDR axis: x = log10(1 / (1 - p)), 90% to 99.999%.
std::string percentile_chart(const RunResult& r) {
  const Histogram& h = latency_side(r).latency;
  if (h.count() == 0) return "<p>No latency recorded in this mode.</p>\n";
  const double decades = 5;  // 0% .. 99.999%
  Series s{latency_name(r) + " latency, ms", "#2ca02c", {}};
  for (int i = 0; i <= 200; ++i) {
    const double d = decades * i / 200;
    const double p = 100.0 * (1 - std::pow(10.0, -d));
    s.points.push_back({d / decades, static_cast<double>(h.value_at_percentile(p)) / 1e3});
  }
  std::vector<std::string> ticks = {"0%", "90%", "99%", "99.9%", "99.99%", "99.999%"};
  return svg_chart("Latency by percentile", "ms", {s}, ticks, 0);
}

}  // namespace

std::string summary_table(const RunResult& r) {
  std::string out = settings_line(r) + "\n\n";
  char line[256];
  std::snprintf(line, sizeof line, "%-9s %12s %8s %12s %10s %9s", "", "records", "seconds",
                "records/s", "MB/s", "errors");
  out += line;
  out += "\n";
  for (const auto* side : {&r.produce, &r.consume}) {
    if (!side->active) continue;
    std::snprintf(line, sizeof line, "%-9s %12lld %8.2f %12.0f %10.2f %9lld\n",
                  side == &r.produce ? "produce" : "consume", static_cast<long long>(side->records),
                  side->seconds, side->records_per_s(), side->mb_per_s(),
                  static_cast<long long>(side->errors));
    out += line;
  }
  const Histogram& h = latency_side(r).latency;
  if (h.count() > 0) {
    out += "\nlatency, " + latency_name(r) + ", ms (from the intended send time):\n";
    std::string names, values;
    for (size_t i = 0; i < std::size(kPercentiles); ++i) {
      names +=
          std::string(10 - std::string_view(kPercentileNames[i]).size(), ' ') + kPercentileNames[i];
      values += fmt("%10.3f", static_cast<double>(h.value_at_percentile(kPercentiles[i])) / 1e3);
    }
    names += "       max      mean";
    values += fmt("%10.3f", static_cast<double>(h.max()) / 1e3) + fmt("%10.3f", h.mean() / 1e3);
    out += names + "\n" + values + "\n";
  }
  if (r.options.mode == Mode::kE2e) {
    out += "\nacknowledged " + std::to_string(r.produced_total) + ", consumed " +
           std::to_string(r.consumed_total) + " (warm-up included), out of order " +
           std::to_string(r.out_of_order) + (r.complete ? ": complete\n" : ": INCOMPLETE\n");
  }
  return out;
}

std::string to_json(const RunResult& r) {
  const Options& o = r.options;
  std::string s = "{\"mode\":" + json_string(mode_name(o.mode));
  s += ",\"command\":" + json_string(settings_line(r));
  s += ",\"config\":{\"bootstrap\":" + json_string(o.bootstrap) +
       ",\"topic\":" + json_string(o.topic) + ",\"partitions\":" + std::to_string(r.partitions) +
       ",\"record_size_min\":" + std::to_string(o.record_bytes_min) +
       ",\"record_size_max\":" + std::to_string(o.record_bytes_max) +
       ",\"key_distribution\":" + json_string(key_distribution_name(o.key_distribution)) +
       ",\"keys\":" + std::to_string(o.keys) + ",\"producers\":" + std::to_string(o.producers) +
       ",\"consumers\":" + std::to_string(o.consumers) + ",\"rate\":" + fmt("%g", o.rate_per_s) +
       ",\"duration_s\":" + fmt("%g", o.duration_s) + ",\"records\":" + std::to_string(o.records) +
       ",\"warmup_s\":" + fmt("%g", o.warmup_s) + ",\"acks\":" + std::to_string(o.acks) +
       ",\"compression\":" + json_string(o.compression) +
       ",\"batch_size\":" + std::to_string(o.batch_bytes) +
       ",\"linger_ms\":" + std::to_string(o.linger_ms) +
       ",\"client\":" + json_string(o.client == ClientKind::kRaw ? "raw" : "library") + "}";
  if (r.produce.active) s += ",\"produce\":" + json_side(r.produce);
  if (r.consume.active) s += ",\"consume\":" + json_side(r.consume);
  s += ",\"produced_total\":" + std::to_string(r.produced_total) +
       ",\"consumed_total\":" + std::to_string(r.consumed_total) +
       ",\"out_of_order\":" + std::to_string(r.out_of_order) +
       ",\"complete\":" + (r.complete ? "true" : "false");
  s += ",\"samples\":[";
  for (size_t i = 0; i < r.samples.size(); ++i) {
    const Sample& x = r.samples[i];
    if (i) s += ",";
    s += "{\"t\":" + fmt("%.3f", x.t_s) + ",\"warmup\":" + (x.warmup ? "true" : "false") +
         ",\"produce_records_per_s\":" + fmt("%.0f", x.produce_records_per_s) +
         ",\"produce_mb_per_s\":" + fmt("%.3f", x.produce_mb_per_s) +
         ",\"consume_records_per_s\":" + fmt("%.0f", x.consume_records_per_s) +
         ",\"consume_mb_per_s\":" + fmt("%.3f", x.consume_mb_per_s) +
         ",\"p50_us\":" + std::to_string(x.p50_us) + ",\"p99_us\":" + std::to_string(x.p99_us) +
         ",\"max_us\":" + std::to_string(x.max_us) + "}";
  }
  return s + "]}\n";
}

std::string to_html(const RunResult& r) {
  std::string s = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>sluice bench " +
                  mode_name(r.options.mode) +
                  "</title>\n<style>body{font-family:sans-serif;margin:2em;max-width:60em}"
                  "pre{background:#f6f6f6;padding:1em;overflow-x:auto}</style></head><body>\n";
  s += "<h1>sluice bench " + mode_name(r.options.mode) + "</h1>\n";
  s += "<h2>Summary</h2>\n<pre>" + html_escape(summary_table(r)) + "</pre>\n";
  s += "<h2>Throughput over time</h2>\n" + throughput_chart(r);
  s += "<h2>Latency by percentile</h2>\n" + percentile_chart(r);
  s += "<p>MB = 10<sup>6</sup> bytes of record values. Latency is measured from each record's "
       "intended send time, so a stall counts against every record it delayed.</p>\n";
  return s + "</body></html>\n";
}

}  // namespace sluice::bench

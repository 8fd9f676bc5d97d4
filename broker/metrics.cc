#include "broker/metrics.h"

#include <fmt/format.h>

#include <cmath>

#include "common/assert.h"

namespace sluice::broker {

ShardMetrics*& this_shard_metrics() {
  static thread_local ShardMetrics* metrics = nullptr;
  return metrics;
}

namespace {

// Label values: backslash, double quote and line feed escaped.
void escape_label(std::string_view s, std::string& out) {
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

void append_double(double v, std::string& out) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    fmt::format_to(std::back_inserter(out), "{}", v);
  }
}

}  // namespace

void PromWriter::family(std::string_view name, std::string_view type, std::string_view help) {
  SLUICE_ASSERT(!name.empty());
  SLUICE_ASSERT(type == "counter" || type == "gauge" || type == "histogram");
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  for (char c : help) {  // help text: backslash and line feed escaped
    if (c == '\\') {
      out_ += "\\\\";
    } else if (c == '\n') {
      out_ += "\\n";
    } else {
      out_ += c;
    }
  }
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void PromWriter::begin(std::string_view name, std::string_view suffix,
                       std::initializer_list<Label> labels, std::string_view le) {
  out_ += name;
  out_ += suffix;
  if (labels.size() == 0 && le.empty()) {
    out_ += ' ';
    return;
  }
  out_ += '{';
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out_ += ',';
    first = false;
    out_ += k;
    out_ += "=\"";
    escape_label(v, out_);
    out_ += '"';
  }
  if (!le.empty()) {
    if (!first) out_ += ',';
    out_ += "le=\"";
    out_ += le;
    out_ += '"';
  }
  out_ += "} ";
}

void PromWriter::sample(std::string_view name, std::initializer_list<Label> labels, double value) {
  begin(name, "", labels);
  append_double(value, out_);
  out_ += '\n';
}

void PromWriter::sample(std::string_view name, std::initializer_list<Label> labels,
                        uint64_t value) {
  begin(name, "", labels);
  fmt::format_to(std::back_inserter(out_), "{}\n", value);
}

void PromWriter::sample(std::string_view name, std::initializer_list<Label> labels,
                        int64_t value) {
  begin(name, "", labels);
  fmt::format_to(std::back_inserter(out_), "{}\n", value);
}

void PromWriter::histogram(std::string_view name, std::initializer_list<Label> labels,
                           const LatencyHistogram& h) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < LatencyHistogram::kBuckets; ++i) {
    cumulative += h.bucket(i);
    std::string le = i < LatencyHistogram::kBoundsUs.size()
                         ? fmt::format("{}", static_cast<double>(LatencyHistogram::kBoundsUs[i]) / 1e6)
                         : std::string("+Inf");
    begin(name, "_bucket", labels, le);
    fmt::format_to(std::back_inserter(out_), "{}\n", cumulative);
  }
  SLUICE_ASSERT(cumulative == h.count());  // the +Inf bucket is the count
  begin(name, "_sum", labels);
  append_double(static_cast<double>(h.sum_ns()) / 1e9, out_);
  out_ += '\n';
  begin(name, "_count", labels);
  fmt::format_to(std::back_inserter(out_), "{}\n", h.count());
}

}  // namespace sluice::broker

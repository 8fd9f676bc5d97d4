// PartitionLog::scrub: the background check of closed segments (bit rot, a bad disk, a
// stray write). Recovery checks only what may be unsynced; this checks the rest, a bounded
// step at a time, and marks what fails exactly as recovery would.
#include <algorithm>

#include "log/internal/segment.h"
#include "log/log.h"
#include "log/logging.h"
#include "protocol/record_batch.h"

namespace sluice::log {

using detail::Segment;

LogResult<ScrubResult> PartitionLog::scrub(uint64_t max_bytes) {
  if (failure_) return unexpected(*failure_);
  ScrubResult out;
  bool wrapped = false;
  while (out.bytes_checked < max_bytes) {
    // The first segment at or after the cursor; only closed, durable, undamaged ones count.
    auto it = std::find_if(segments_.begin(), segments_.end(),
                           [this](const auto& s) { return s->base_offset >= scrub_segment_; });
    if (it == segments_.end() || (*it)->active || (*it)->unsynced || (*it)->dirty) {
      out.round_done = true;
      if (wrapped) break;
      wrapped = true;
      scrub_segment_ = -1;
      scrub_position_ = 0;
      continue;
    }
    Segment& seg = **it;
    if (seg.base_offset != scrub_segment_) {
      scrub_segment_ = seg.base_offset;
      scrub_position_ = 0;
    }
    if (seg.corrupt_from >= 0 || scrub_position_ >= seg.size_bytes) {
      scrub_segment_ = seg.base_offset + 1;  // on to the next segment
      scrub_position_ = 0;
      continue;
    }
    auto file = log_file(seg);
    if (!file) return unexpected(file.error());
    const uint64_t position = scrub_position_;
    // The offset the batch at `position` starts at, for the report if its header is bad.
    int64_t offset = seg.base_offset;
    std::string problem;
    auto header = detail::read_batch_header((*file)->fd(), position, seg.size_bytes);
    if (!header) {
      if (header.error().code != LogErrc::kCorrupt) return unexpected(header.error());
      problem = header.error().message;
      if (position > 0) offset = scrub_last_end_;
    } else {
      offset = header->base_offset;
      scrub_buffer_.resize(header->size_bytes);
      if (auto r = detail::pread_full((*file)->fd(), scrub_buffer_, position); !r) {
        return unexpected(r.error());
      }
      auto view = kafka::RecordBatchView::parse(scrub_buffer_);
      if (!view) {
        problem = view.error().message;
      } else if (auto crc = view->verify_crc(); !crc) {
        problem = crc.error().message;
      }
    }
    if (!problem.empty()) {
      RecoveryIssue issue{.kind = RecoveryIssue::Kind::kCorruptClosed,
                          .segment_base_offset = seg.base_offset,
                          .offset = offset,
                          .position = position,
                          .detail = problem};
      seg.corrupt_from = offset;
      seg.corrupt_position = position;
      report_.issues.push_back(issue);
      detail::log_line(LogLevel::kError, dir_.string() + ": scrub: corrupt closed segment " +
                                             std::to_string(seg.base_offset) + " from offset " +
                                             std::to_string(offset) + ": " + problem);
      out.issues.push_back(std::move(issue));
      continue;  // the rest of this segment is not served; the cursor moves on next turn
    }
    scrub_position_ += header->size_bytes;
    scrub_last_end_ = header->last_offset + 1;
    out.bytes_checked += header->size_bytes;
  }
  SLUICE_ASSERT(wrapped || out.bytes_checked >= max_bytes);
  return out;
}

}  // namespace sluice::log

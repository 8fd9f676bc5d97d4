// PartitionLog::scrub: the background check of closed segments (bit rot, a bad disk, a
// stray write). Recovery checks only what may be unsynced; this checks the rest, a bounded
// step at a time, and marks what fails exactly as recovery would. Its reads go through the
// ring: a step checks what the previous step's read brought, then sends the next read.
#include <fcntl.h>

#include <algorithm>

#include "log/internal/segment.h"
#include "log/log.h"
#include "log/logging.h"
#include "protocol/record_batch.h"

namespace sluice::log {

using detail::Segment;

namespace {
// A read asks for at most this much (and at least one whole batch).
constexpr uint64_t kScrubReadMax = 1 << 20;
}  // namespace

LogResult<ScrubResult> PartitionLog::scrub(uint64_t max_bytes) {
  if (failure_) return unexpected(*failure_);
  ScrubResult out;
  if (scrub_read_) {
    if (!scrub_read_->done) return out;  // in flight
    const auto read = std::move(scrub_read_);
    scrub_read_.reset();
    if (auto r = scrub_check(*read, out); !r) return unexpected(r.error());
  }
  if (scrub_opening_) return out;
  for (bool wrapped = false;;) {
    // The first segment at or after the cursor; only closed, durable, undamaged ones count.
    auto it = std::find_if(segments_.begin(), segments_.end(),
                           [this](const auto& s) { return s->base_offset >= scrub_segment_; });
    if (it == segments_.end() || (*it)->active || (*it)->unsynced || (*it)->dirty) {
      out.round_done = true;
      scrub_segment_ = -1;
      scrub_position_ = 0;
      if (wrapped) return out;
      wrapped = true;
      continue;
    }
    Segment& seg = **it;
    if (seg.base_offset != scrub_segment_) {
      scrub_segment_ = seg.base_offset;
      scrub_position_ = 0;
      scrub_need_ = 0;
    }
    if (seg.corrupt_from >= 0 || scrub_position_ >= seg.size_bytes) {
      scrub_segment_ = seg.base_offset + 1;  // on to the next segment
      scrub_position_ = 0;
      continue;
    }
    // The read handle: the segment's own, the cache's, or one the scrubber opened; else it is
    // opened through the ring (and kept by the scrubber) and the read waits for the next step.
    std::shared_ptr<FileHandle> file = seg.log_rw ? seg.log_rw : fds_.find(seg.log_path);
    if (!file && scrub_file_base_ == seg.base_offset) file = scrub_file_;
    if (!file) {
      scrub_opening_ = true;
      ++ops_in_flight_;
      ring_.open(seg.log_path, O_RDONLY, 0,
                 [this, base = seg.base_offset, epoch = files_epoch_](int32_t res) {
                   op_done();
                   scrub_opening_ = false;
                   auto opened = res >= 0 ? std::make_shared<FileHandle>(res) : nullptr;
                   // Kept only if no file changed meanwhile (it could be the old one); a
                   // failure (the segment deleted) is retried, or skipped, at the next step.
                   if (opened && epoch == files_epoch_) {
                     scrub_file_ = std::move(opened);
                     scrub_file_base_ = base;
                   }
                 });
      ring_.submit();
      return out;
    }
    // At least the batch at the cursor when its size is known, and the header after it (so
    // that the next step knows the next batch's size: one batch a step at the least).
    const uint64_t want =
        std::min({std::max(max_bytes, scrub_need_ + kafka::kBatchHeaderBytes),
                  kScrubReadMax + scrub_need_, seg.size_bytes - scrub_position_});
    auto read = std::make_shared<ScrubRead>();
    read->segment_base = seg.base_offset;
    read->position = scrub_position_;
    read->bytes.resize(want);
    scrub_read_ = read;
    out.bytes_read = want;
    ++ops_in_flight_;
    ring_.read(file->fd(), MutableBytes(read->bytes.data(), want), scrub_position_,
               [this, read, file](int32_t res) {
                 op_done();
                 read->result = res;
                 read->done = true;
               });
    ring_.submit();
    return out;
  }
}

LogResult<void> PartitionLog::scrub_check(const ScrubRead& read, ScrubResult& out) {
  // The cursor moved (a new round) or the segment went: drop it. (A segment whose file was
  // replaced or cut meanwhile, by compaction or a truncation, dropped the read already.)
  Segment* seg = find_segment(read.segment_base);
  if (seg == nullptr || seg->base_offset != read.segment_base ||
      scrub_segment_ != read.segment_base || scrub_position_ != read.position ||
      seg->corrupt_from >= 0) {
    return {};
  }
  if (read.result < 0) {
    return errno_error(-read.result, "scrub read " + seg->log_path);
  }
  const uint64_t got = static_cast<uint64_t>(read.result);
  const bool short_read = got < read.bytes.size();  // the file ends before the segment does
  uint64_t at = 0;
  scrub_need_ = 0;
  if (got == 0) {
    // Nothing at the cursor, inside the segment: the file was cut short.
    RecoveryIssue issue{.kind = RecoveryIssue::Kind::kCorruptClosed,
                        .segment_base_offset = seg->base_offset,
                        .offset = read.position > 0 ? scrub_last_end_ : seg->base_offset,
                        .position = read.position,
                        .detail = "the file ends before the segment does"};
    seg->corrupt_from = issue.offset;
    seg->corrupt_position = read.position;
    report_.issues.push_back(issue);
    detail::log_line(LogLevel::kError, dir_.string() + ": scrub: corrupt closed segment " +
                                           std::to_string(seg->base_offset) + ": " + issue.detail);
    out.issues.push_back(std::move(issue));
    return {};
  }
  while (at < got) {
    const uint64_t position = read.position + at;
    // The offset the batch at `position` starts at, for the report if its header is bad.
    int64_t offset = position > 0 ? scrub_last_end_ : seg->base_offset;
    std::string problem;
    // Headers are checked against the segment's end, as recovery does; a batch that goes on
    // past what this read brought is read whole by the next step.
    if (got - at < kafka::kBatchHeaderBytes && !short_read &&
        seg->size_bytes - position >= kafka::kBatchHeaderBytes) {
      break;  // the next read starts with this header
    }
    auto header = detail::parse_batch_header(
        read.bytes.data() + at, position,
        short_read ? read.position + got : seg->size_bytes);
    if (!header) {
      problem = header.error().message;
    } else {
      offset = header->base_offset;
      if (header->size_bytes > got - at) {
        scrub_need_ = header->size_bytes;
        break;
      }
      auto view = kafka::RecordBatchView::parse(Bytes(read.bytes.data() + at, header->size_bytes));
      if (!view) {
        problem = view.error().message;
      } else if (auto crc = view->verify_crc(); !crc) {
        problem = crc.error().message;
      }
    }
    if (!problem.empty()) {
      RecoveryIssue issue{.kind = RecoveryIssue::Kind::kCorruptClosed,
                          .segment_base_offset = seg->base_offset,
                          .offset = offset,
                          .position = position,
                          .detail = problem};
      seg->corrupt_from = offset;
      seg->corrupt_position = position;
      report_.issues.push_back(issue);
      detail::log_line(LogLevel::kError, dir_.string() + ": scrub: corrupt closed segment " +
                                             std::to_string(seg->base_offset) + " from offset " +
                                             std::to_string(offset) + ": " + problem);
      out.issues.push_back(std::move(issue));
      return {};  // the rest of this segment is not served; the cursor moves on next turn
    }
    scrub_position_ += header->size_bytes;
    scrub_last_end_ = header->last_offset + 1;
    out.bytes_checked += header->size_bytes;
    at += header->size_bytes;
  }
  return {};
}

}  // namespace sluice::log

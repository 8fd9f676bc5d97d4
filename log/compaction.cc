#include "log/compaction.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>

#include "common/assert.h"
#include "log/fd_cache.h"
#include "log/internal/segment.h"
#include "log/log.h"
#include "protocol/record_batch.h"

namespace sluice::log {

namespace {

LogError corrupt(const kafka::BatchError& e) { return LogError{LogErrc::kCorrupt, e.message}; }

// Calls fn(record, offset) for each record of a data batch (none for a control batch), in
// order, until fn returns false; returns whether it went through them all.
template <class F>
LogResult<bool> each_record(const kafka::RecordBatchView& batch, std::vector<std::byte>& scratch,
                            F&& fn) {
  if (batch.is_control()) return true;
  auto records = batch.records(scratch);
  if (!records) return unexpected(corrupt(records.error()));
  while (true) {
    auto r = records->next();
    if (!r) return unexpected(corrupt(r.error()));
    if (!*r) return true;
    if (!fn(**r, batch.base_offset() + (*r)->offset_delta)) return false;
  }
}

// Rebuilds `batch` with only the records `keep` says, preserving its offsets and header.
LogResult<std::vector<std::byte>> rebuild(const kafka::RecordBatchView& batch,
                                          const std::vector<kafka::Record>& kept) {
  kafka::RecordBatchBuilder::Options o;
  o.base_offset = batch.base_offset();
  o.partition_leader_epoch = batch.partition_leader_epoch();
  o.compression = batch.compression();
  o.timestamp_type = batch.timestamp_type();
  o.producer_id = batch.producer_id();
  o.producer_epoch = batch.producer_epoch();
  o.base_sequence = batch.base_sequence();
  o.transactional = batch.is_transactional();
  o.last_offset_delta = batch.last_offset_delta();
  kafka::RecordBatchBuilder builder(o);
  std::vector<kafka::Header> headers;
  for (const kafka::Record& r : kept) {
    headers.clear();
    kafka::HeaderReader hr(r.headers, r.header_count);
    while (true) {
      auto h = hr.next();
      if (!h) return unexpected(corrupt(h.error()));
      if (!*h) break;
      headers.push_back(**h);
    }
    builder.append_with_delta(r.offset_delta, batch.base_timestamp() + r.timestamp_delta, r.key,
                              r.value, headers);
  }
  auto built = builder.build();
  if (!built) return unexpected(corrupt(built.error()));
  // The batch keeps its time span (and, when empty, its base timestamp).
  using namespace kafka::batch_layout;
  if (kept.empty()) store_be<int64_t>(built->data() + kBaseTimestamp, batch.base_timestamp());
  store_be<int64_t>(built->data() + kMaxTimestamp, batch.max_timestamp());
  kafka::update_crc(*built);
  return std::move(*built);
}

// Whether `batch` holds records of an aborted transaction (`aborted` sorted by producer id,
// then first offset; one producer's transactions do not overlap).
bool in_aborted(const kafka::RecordBatchView& batch, const std::vector<AbortedRange>& aborted) {
  if (aborted.empty() || !batch.is_transactional() || batch.is_control()) return false;
  const std::pair<int64_t, int64_t> at{batch.producer_id(), batch.base_offset()};
  auto it =
      std::upper_bound(aborted.begin(), aborted.end(), at,
                       [](const std::pair<int64_t, int64_t>& v, const AbortedRange& a) {
                         return v < std::pair<int64_t, int64_t>{a.producer_id, a.first_offset};
                       });
  if (it == aborted.begin()) return false;
  --it;
  return it->producer_id == at.first && at.second <= it->last_offset;
}

// An empty batch over `batch`'s offsets and time span, of no producer: what a batch that is
// to merge into a run of empty batches becomes (the run keeps its first batch's header).
LogResult<std::vector<std::byte>> plain_empty(const kafka::RecordBatchView& batch) {
  kafka::RecordBatchBuilder::Options o;
  o.base_offset = batch.base_offset();
  o.partition_leader_epoch = batch.partition_leader_epoch();
  o.timestamp_type = batch.timestamp_type();
  o.last_offset_delta = batch.last_offset_delta();
  kafka::RecordBatchBuilder builder(o);
  auto built = builder.build();
  if (!built) return unexpected(corrupt(built.error()));
  using namespace kafka::batch_layout;
  store_be<int64_t>(built->data() + kBaseTimestamp, batch.base_timestamp());
  store_be<int64_t>(built->data() + kMaxTimestamp, batch.max_timestamp());
  kafka::update_crc(*built);
  return std::move(*built);
}

// `empty` (a batch without records) no longer marked transactional.
void clear_transactional(std::vector<std::byte>& empty) {
  using namespace kafka::batch_layout;
  const auto attributes = load_be<int16_t>(empty.data() + kAttributes);
  store_be<int16_t>(empty.data() + kAttributes, static_cast<int16_t>(attributes & ~0x10));
  kafka::update_crc(empty);
}

// What CompactionOptions::producers decides for a batch that ends up without records, and for
// a marker.
class ProducerRules {
 public:
  explicit ProducerRules(const CompactionOptions& options) : options_(options) {}
  bool on() const { return options_.producers.has_value(); }

  // A data batch of a producer (or not) that keeps no record: kMerge into the empty run
  // (plain), kKeep it as it is, kPlainIdempotent: keep it, no longer transactional.
  enum class Empty : uint8_t { kMerge, kKeep, kClearTransactional };
  Empty empty_batch(const kafka::RecordBatchView& batch) const {
    const int64_t pid = batch.producer_id();
    if (pid < 0) return batch.is_transactional() ? Empty::kKeep : Empty::kMerge;
    if (!on()) return Empty::kKeep;
    const auto& last = options_.producers->last_batch;
    auto it =
        std::lower_bound(last.begin(), last.end(), std::pair<int64_t, int64_t>{pid, INT64_MIN});
    const bool is_last = it != last.end() && it->first == pid &&
                         (it->second == batch.base_offset() || it->second < 0);
    if (!is_last) return Empty::kMerge;
    return batch.is_transactional() ? Empty::kClearTransactional : Empty::kKeep;
  }

  // Notes a data batch of the input (before it is compacted) in `scan`.
  static void saw_data(const kafka::RecordBatchView& batch, MarkerScan* scan) {
    if (scan && batch.is_transactional() && batch.producer_id() >= 0) {
      scan->in_transaction.insert(batch.producer_id());
    }
  }

  // A control batch: whether it goes (noting in `scan` that its transaction ended).
  LogResult<bool> marker_goes(const kafka::RecordBatchView& batch, bool expired,
                              MarkerScan* scan) const {
    if (!on() || !scan || batch.producer_id() < 0) return false;
    auto marker = kafka::read_end_txn_marker(batch);
    if (!marker) return unexpected(corrupt(marker.error()));
    if (!*marker) return false;  // not a transaction marker
    const bool batches_left = scan->in_transaction.erase(batch.producer_id()) > 0;
    if (batches_left || !expired) return false;
    const auto& kept = options_.producers->kept_markers;
    return !std::binary_search(kept.begin(), kept.end(), batch.base_offset());
  }

 private:
  const CompactionOptions& options_;
};

// The latest offset known for a key, -1 if none.
using LatestFn = std::function<int64_t(Bytes key)>;
// Takes one whole batch of the output, in offset order.
using BatchSink = std::function<LogResult<void>(Bytes batch)>;

// Which records of a batch survive: a keyed record goes when a later offset is known for its
// key; a tombstone that is the latest goes when below `map_end` and its batch is older than
// delete.retention.ms; every record of an aborted transaction goes. Control batches and
// keyless records (outside aborted transactions) stay.
class RecordFilter {
 public:
  RecordFilter(const LatestFn& latest, int64_t map_end, const CompactionOptions& options)
      : latest_(latest), map_end_(map_end), options_(options) {}

  bool tombstones_expire(const kafka::RecordBatchView& batch) const {
    return batch.max_timestamp() < options_.now_ms - options_.delete_retention_ms;
  }
  bool aborted(const kafka::RecordBatchView& batch) const {
    return in_aborted(batch, options_.aborted);
  }
  // keep, and whether a dropped record was a tombstone
  std::pair<bool, bool> keep(const kafka::Record& rec, int64_t offset, bool expire) const {
    if (!rec.key) return {true, false};
    const int64_t later = latest_(*rec.key);
    if (later > offset) return {false, false};
    if (!rec.value && expire && offset < map_end_) return {false, true};
    return {true, false};
  }

 private:
  const LatestFn& latest_;
  int64_t map_end_;
  const CompactionOptions& options_;
};

// Whether compacting `batch` would drop anything (no output, cheap: stops at the first).
LogResult<bool> would_drop(const kafka::RecordBatchView& batch, const RecordFilter& filter,
                           std::vector<std::byte>& scratch) {
  if (filter.aborted(batch)) return batch.record_count() > 0;
  const bool expire = filter.tombstones_expire(batch);
  auto all_kept = each_record(batch, scratch, [&](const kafka::Record& rec, int64_t offset) {
    return filter.keep(rec, offset, expire).first;
  });
  if (!all_kept) return unexpected(all_kept.error());
  return !*all_kept;
}

// Whether compacting `batch` would change it: drop records, or (CompactionOptions::producers)
// remove a marker or rewrite a producer's empty batch. Notes the batch in `scan`.
LogResult<bool> would_change(const kafka::RecordBatchView& batch, const RecordFilter& filter,
                             const ProducerRules& rules, MarkerScan* scan,
                             std::vector<std::byte>& scratch) {
  if (batch.is_control()) return rules.marker_goes(batch, filter.tombstones_expire(batch), scan);
  ProducerRules::saw_data(batch, scan);
  auto drops = would_drop(batch, filter, scratch);
  if (!drops || *drops || batch.record_count() > 0 || !rules.on()) return drops;
  // Already empty: rewritten if it is to merge (and is not plain already) or lose its mark.
  switch (rules.empty_batch(batch)) {
    case ProducerRules::Empty::kMerge:
      return batch.producer_id() >= 0 || batch.is_transactional();
    case ProducerRules::Empty::kClearTransactional:
      return true;
    case ProducerRules::Empty::kKeep:
      return false;
  }
  return false;
}

// Compacts a stream of batches (one segment's, in order) into `sink`.
class BatchCompactor {
 public:
  BatchCompactor(const RecordFilter& filter, const ProducerRules& rules, MarkerScan* scan,
                 CompactionStats& stats, BatchSink sink)
      : filter_(filter), rules_(rules), scan_(scan), stats_(stats), sink_(std::move(sink)) {}

  LogResult<void> add(const kafka::RecordBatchView& batch) {
    const Bytes whole = batch.bytes();
    stats_.bytes_before += whole.size();
    bool all = true;
    if (batch.is_control()) {
      auto goes = rules_.marker_goes(batch, filter_.tombstones_expire(batch), scan_);
      if (!goes) return unexpected(goes.error());
      if (*goes) {
        ++stats_.markers_removed;
        return merge_empty(batch, /*plain=*/true);
      }
    } else {
      ProducerRules::saw_data(batch, scan_);
      kept_.clear();
      const bool expire = filter_.tombstones_expire(batch);
      const bool aborted = filter_.aborted(batch);
      auto r = each_record(batch, scratch_, [&](const kafka::Record& rec, int64_t offset) {
        const auto [keep, tombstone] =
            aborted ? std::pair{false, false} : filter_.keep(rec, offset, expire);
        if (keep) {
          kept_.push_back(rec);
          ++stats_.records_kept;
        } else {
          all = false;
          ++stats_.records_removed;
          if (tombstone) ++stats_.tombstones_removed;
        }
        return true;
      });
      if (!r) return unexpected(r.error());
      // Idempotent producers' batches stay separate: their sequence numbers matter (without
      // CompactionOptions::producers, always; with it, a producer's last batch only).
      const auto empty = kept_.empty() ? rules_.empty_batch(batch) : ProducerRules::Empty::kKeep;
      if (empty == ProducerRules::Empty::kMerge) {
        const bool plain = batch.producer_id() < 0 && !batch.is_transactional();
        if (batch.record_count() > 0 || empty_run_ || !plain) return merge_empty(batch, !plain);
        // Empty since an earlier pass: it starts a run as it is, which a later batch merging
        // away joins (alone, the run is written back unchanged).
        empty_run_.emplace(whole.begin(), whole.end());
        return {};
      }
      if (auto r = flush_empty(); !r) return r;
      if (empty == ProducerRules::Empty::kClearTransactional) {
        auto rebuilt = rebuild(batch, kept_);
        if (!rebuilt) return unexpected(rebuilt.error());
        clear_transactional(*rebuilt);
        stats_.bytes_after += rebuilt->size();
        ++stats_.batches_rebuilt;
        if (all) ++stats_.batches_converted;
        return sink_(*rebuilt);
      }
      if (!all) {
        auto rebuilt = rebuild(batch, kept_);  // `kept_` points into `scratch_` or the batch
        if (!rebuilt) return unexpected(rebuilt.error());
        stats_.bytes_after += rebuilt->size();
        ++stats_.batches_rebuilt;
        return sink_(*rebuilt);
      }
    }
    if (auto r = flush_empty(); !r) return r;
    stats_.bytes_after += whole.size();
    ++stats_.batches_copied;
    return sink_(whole);
  }

  LogResult<void> finish() { return flush_empty(); }

 private:
  // `batch`, left without records, joins the run of empty batches (or starts one). `plain`:
  // it starts one as a batch of no producer (a producer's batch or a marker merging away).
  LogResult<void> merge_empty(const kafka::RecordBatchView& batch, bool plain) {
    if (empty_run_) {
      // Extend the run to this batch's last offset; the earliest base timestamp stays.
      auto prev = kafka::RecordBatchView::parse(*empty_run_);
      SLUICE_ASSERT(prev.has_value());
      const int64_t delta = batch.last_offset() - prev->base_offset();
      if (delta <= INT32_MAX) {
        using namespace kafka::batch_layout;
        store_be<int32_t>(empty_run_->data() + kLastOffsetDelta, static_cast<int32_t>(delta));
        store_be<int64_t>(empty_run_->data() + kMaxTimestamp,
                          std::max(prev->max_timestamp(), batch.max_timestamp()));
        kafka::update_crc(*empty_run_);
        ++stats_.batches_rebuilt;
        if (plain) ++stats_.batches_converted;
        return {};
      }
      if (auto r = flush_empty(); !r) return r;
    }
    auto rebuilt = plain ? plain_empty(batch) : rebuild(batch, kept_);
    if (!rebuilt) return unexpected(rebuilt.error());
    empty_run_ = std::move(*rebuilt);
    ++stats_.batches_rebuilt;
    if (plain) ++stats_.batches_converted;
    return {};
  }

  // A run of batches left without records becomes one empty batch spanning all their offsets
  // (segments are contiguous runs of batches, so the span must stay covered).
  LogResult<void> flush_empty() {
    if (!empty_run_) return {};
    std::vector<std::byte> run = std::move(*empty_run_);
    empty_run_.reset();
    stats_.bytes_after += run.size();
    return sink_(run);
  }

  const RecordFilter& filter_;
  const ProducerRules& rules_;
  MarkerScan* scan_;
  CompactionStats& stats_;
  BatchSink sink_;
  std::vector<std::byte> scratch_;
  std::vector<kafka::Record> kept_;
  std::optional<std::vector<std::byte>> empty_run_;
};

// Reads a closed segment's .log by path, batch by batch, through a buffer of bounded size
// (grown only for a batch larger than it). Every batch is checked, CRC included.
class SegmentStream {
 public:
  SegmentStream(const ClosedSegment& segment, uint32_t buffer_bytes)
      : segment_(segment), buffer_(std::max<uint32_t>(buffer_bytes, 4096)) {}

  // False when the file is gone (retention or a deletion got there first).
  LogResult<bool> open() {
    int fd;
    do {
      fd = ::open(segment_.log_path.c_str(), O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0 && errno == ENOENT) return false;
    if (fd < 0) return errno_error(errno, "open " + segment_.log_path);
    file_ = std::make_shared<FileHandle>(fd);
    return true;
  }

  // The next batch (valid until the next call), nullopt after the segment's last one.
  LogResult<std::optional<kafka::RecordBatchView>> next() {
    if (consumed_ >= segment_.size_bytes) return std::optional<kafka::RecordBatchView>();
    constexpr size_t kHead = kafka::kBatchLogOverheadBytes;
    if (auto r = fill(kHead); !r) return unexpected(r.error());
    const auto length = load_be<int32_t>(buffer_.data() + begin_ + kafka::batch_layout::kBatchLength);
    const uint64_t total = kHead + static_cast<uint64_t>(std::max<int32_t>(length, 0));
    if (length < static_cast<int32_t>(kafka::kBatchHeaderBytes - kHead) ||
        consumed_ + total > segment_.size_bytes) {
      return damaged("a batch length that runs past the segment");
    }
    if (auto r = fill(total); !r) return unexpected(r.error());
    auto view = kafka::RecordBatchView::parse(Bytes(buffer_.data() + begin_, total));
    if (!view) return damaged(view.error().message);
    if (auto c = view->verify_crc(); !c) return damaged(c.error().message);
    // The offsets are outside the CRC: they must run on from the segment's base, unbroken.
    if (view->base_offset() != next_offset_ || view->last_offset() >= segment_.end_offset) {
      return damaged("a batch at offset " + std::to_string(view->base_offset()) + ", not " +
                     std::to_string(next_offset_));
    }
    next_offset_ = view->last_offset() + 1;
    position_ = consumed_;
    begin_ += total;
    consumed_ += total;
    return std::optional<kafka::RecordBatchView>(*view);
  }
  uint64_t position() const { return position_; }  // of the batch next() returned last

 private:
  Unexpected<LogError> damaged(const std::string& why) const {
    return log_error(LogErrc::kCorrupt, segment_.log_path + " at byte " +
                                            std::to_string(consumed_) + ": " + why);
  }
  // Makes `n` bytes from begin_ available.
  LogResult<void> fill(uint64_t n) {
    if (end_ - begin_ >= n) return {};
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
    if (buffer_.size() < n) buffer_.resize(n);
    const uint64_t in_file = segment_.size_bytes - (consumed_ + end_);
    const uint64_t want = std::min<uint64_t>(buffer_.size() - end_, in_file);
    if (end_ + want < n) return damaged("the segment ends inside a batch");
    if (auto r = detail::pread_full(file_->fd(), MutableBytes(buffer_.data() + end_, want),
                                    consumed_ + end_);
        !r) {
      return r;
    }
    end_ += want;
    return {};
  }

  const ClosedSegment& segment_;
  std::shared_ptr<FileHandle> file_;
  std::vector<std::byte> buffer_;
  size_t begin_ = 0, end_ = 0;  // unread bytes in buffer_
  uint64_t consumed_ = 0;       // segment bytes handed out (file position of buffer_[begin_])
  int64_t next_offset_ = segment_.base_offset;  // where the next batch must start
  uint64_t position_ = 0;
};

LogResult<void> write_and_sync(const std::string& path, Bytes bytes) {
  auto f = FileHandle::open(path, O_RDWR | O_CREAT | O_TRUNC);
  if (!f) return unexpected(f.error());
  if (auto r = detail::pwrite_full((*f)->fd(), bytes, 0); !r) return r;
  if (::fdatasync((*f)->fd()) != 0) return errno_error(errno, "fdatasync " + path);
  return {};
}

Unexpected<LogError> stopped() { return log_error(LogErrc::kInvalidArgument, "stopped"); }

}  // namespace

// OffsetMap ------------------------------------------------------------------------------------

struct OffsetMap::Digest {
  EVP_MD* md = nullptr;
  EVP_MD_CTX* ctx = nullptr;
  Digest() : md(EVP_MD_fetch(nullptr, "SHA256", nullptr)), ctx(EVP_MD_CTX_new()) {
    SLUICE_ASSERT(md != nullptr && ctx != nullptr);
  }
  ~Digest() {
    EVP_MD_CTX_free(ctx);
    EVP_MD_free(md);
  }
};

OffsetMap::OffsetMap(uint64_t max_bytes) : digest_(std::make_unique<Digest>()) {
  max_slots_ = std::bit_floor(std::max<uint64_t>(max_bytes / kSlotBytes, 16));
  max_entries_ = max_slots_ / 4 * 3;
  slots_.resize(std::min<uint64_t>(max_slots_, 1u << 12));
}

OffsetMap::~OffsetMap() = default;

void OffsetMap::digest(Bytes key, uint64_t& a, uint64_t& b) const {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  const bool ok = EVP_DigestInit_ex2(digest_->ctx, digest_->md, nullptr) == 1 &&
                  EVP_DigestUpdate(digest_->ctx, key.data(), key.size()) == 1 &&
                  EVP_DigestFinal_ex(digest_->ctx, out, &n) == 1;
  SLUICE_ASSERT(ok && n >= 16);
  std::memcpy(&a, out, 8);
  std::memcpy(&b, out + 8, 8);
}

OffsetMap::Slot* OffsetMap::find(uint64_t a, uint64_t b) {
  const uint64_t mask = slots_.size() - 1;
  for (uint64_t i = a & mask;; i = (i + 1) & mask) {
    Slot& s = slots_[i];
    if (s.offset < 0 || (s.a == a && s.b == b)) return &s;
  }
}

void OffsetMap::grow() {
  std::vector<Slot> old(slots_.size() * 2);
  old.swap(slots_);
  for (const Slot& s : old) {
    if (s.offset >= 0) *find(s.a, s.b) = s;
  }
}

bool OffsetMap::put(Bytes key, int64_t offset) {
  SLUICE_ASSERT(offset >= 0);
  uint64_t a, b;
  digest(key, a, b);
  Slot* s = find(a, b);
  if (s->offset < 0) {
    if (size_ >= max_entries_) return false;
    if ((size_ + 1) * 4 > slots_.size() * 3) {
      grow();
      s = find(a, b);
    }
    ++size_;
  }
  *s = Slot{a, b, offset};
  return true;
}

int64_t OffsetMap::get(Bytes key) const {
  if (size_ == 0) return -1;
  uint64_t a, b;
  digest(key, a, b);
  return const_cast<OffsetMap*>(this)->find(a, b)->offset;
}

void OffsetMap::clear() {
  slots_.assign(std::min<uint64_t>(max_slots_, 1u << 12), Slot{});
  slots_.shrink_to_fit();
  size_ = 0;
}

void CompactionStats::add(const CompactionStats& o) {
  records_kept += o.records_kept;
  records_removed += o.records_removed;
  tombstones_removed += o.tombstones_removed;
  batches_copied += o.batches_copied;
  batches_rebuilt += o.batches_rebuilt;
  batches_converted += o.batches_converted;
  markers_removed += o.markers_removed;
  bytes_before += o.bytes_before;
  bytes_after += o.bytes_after;
  segments_rewritten += o.segments_rewritten;
  keys_mapped += o.keys_mapped;
}

// The in-memory forms -------------------------------------------------------------------------

LogResult<void> index_keys(Bytes batches, OffsetMap& latest,
                           const std::vector<AbortedRange>& aborted) {
  kafka::BatchIterator it(batches);
  std::vector<std::byte> scratch;
  while (true) {
    auto v = it.next();
    if (!v) return unexpected(corrupt(v.error()));
    if (!*v) break;
    if (in_aborted(**v, aborted)) continue;
    bool full = false;
    auto r = each_record(**v, scratch, [&](const kafka::Record& rec, int64_t offset) {
      full = rec.key && !latest.put(*rec.key, offset);
      return !full;
    });
    if (!r) return unexpected(r.error());
    if (full) return log_error(LogErrc::kInvalidArgument, "the offset map is full");
  }
  return {};
}

LogResult<std::vector<std::byte>> compact_batches(Bytes batches, const OffsetMap& latest,
                                                  const CompactionOptions& options,
                                                  CompactionStats& stats, MarkerScan* scan) {
  std::vector<std::byte> out;
  out.reserve(batches.size());
  const LatestFn lookup = [&latest](Bytes key) { return latest.get(key); };
  const RecordFilter filter(lookup, INT64_MAX, options);
  const ProducerRules rules(options);
  MarkerScan whole;
  BatchCompactor compactor(filter, rules, scan ? scan : &whole, stats,
                           [&out](Bytes b) -> LogResult<void> {
                             out.insert(out.end(), b.begin(), b.end());
                             return {};
                           });
  kafka::BatchIterator it(batches);
  while (true) {
    auto v = it.next();
    if (!v) return unexpected(corrupt(v.error()));
    if (!*v) break;
    if (auto r = compactor.add(**v); !r) return unexpected(r.error());
  }
  if (auto r = compactor.finish(); !r) return unexpected(r.error());
  SLUICE_ASSERT(it.consumed() <= batches.size());
  return out;
}

// A pass -------------------------------------------------------------------------------------

LogResult<int64_t> build_offset_map(const std::vector<ClosedSegment>& segments,
                                    int64_t dirty_from, OffsetMap& map,
                                    const CompactionOptions& options,
                                    const std::atomic<bool>* stop) {
  int64_t map_end = dirty_from;
  std::vector<std::byte> scratch;
  for (const ClosedSegment& seg : segments) {
    if (seg.end_offset <= dirty_from) continue;
    SegmentStream in(seg, options.io_buffer_bytes);
    auto opened = in.open();
    if (!opened) return unexpected(opened.error());
    if (!*opened) continue;  // deleted meanwhile: its records are gone anyway
    while (true) {
      if (stop && stop->load(std::memory_order_relaxed)) return stopped();
      auto v = in.next();
      if (!v) return unexpected(v.error());
      if (!*v) break;
      const kafka::RecordBatchView& batch = **v;
      if (batch.last_offset() < dirty_from) continue;
      if (in_aborted(batch, options.aborted)) {  // never a key's latest
        map_end = std::max(map_end, batch.last_offset() + 1);
        continue;
      }
      int64_t full_at = -1;
      auto r = each_record(batch, scratch, [&](const kafka::Record& rec, int64_t offset) {
        if (offset < dirty_from || !rec.key) return true;
        // Full: the next pass goes on from this record (even inside a batch, so that a batch
        // with more records than the map holds still gets through).
        if (!map.put(*rec.key, offset)) {
          full_at = offset;
          return false;
        }
        map_end = std::max(map_end, offset + 1);
        return true;
      });
      if (!r) return unexpected(r.error());
      if (full_at >= 0) return std::max(map_end, full_at);
      map_end = std::max(map_end, batch.last_offset() + 1);
    }
    map_end = std::max(map_end, seg.end_offset);
  }
  return map_end;
}

LogResult<std::optional<CleanedSegment>> clean_segment(const ClosedSegment& segment,
                                                       const OffsetMap& map, int64_t map_end,
                                                       const CompactionOptions& options,
                                                       const std::atomic<bool>* stop,
                                                       MarkerScan* scan) {
  const LatestFn lookup = [&map](Bytes key) { return map.get(key); };
  const RecordFilter filter(lookup, map_end, options);
  const ProducerRules rules(options);
  // A look first, writing nothing: most segments of a compacted log lose nothing in a pass.
  // It notes what it reads in a copy of the scan, which stands when the look read it all.
  {
    SegmentStream in(segment, options.io_buffer_bytes);
    auto opened = in.open();
    if (!opened) return unexpected(opened.error());
    if (!*opened) return std::optional<CleanedSegment>();
    std::vector<std::byte> scratch;
    std::optional<MarkerScan> looked;
    if (scan) looked = *scan;
    bool changes = false;
    while (!changes) {
      if (stop && stop->load(std::memory_order_relaxed)) return stopped();
      auto v = in.next();
      if (!v) return unexpected(v.error());
      if (!*v) break;
      auto d = would_change(**v, filter, rules, looked ? &*looked : nullptr, scratch);
      if (!d) return unexpected(d.error());
      changes = *d;
    }
    if (!changes) {
      if (scan) *scan = std::move(*looked);
      return std::optional<CleanedSegment>();
    }
  }

  CleanedSegment out;
  out.was = segment;
  out.log_side = segment.log_path + ".cleaned";
  out.index_side = segment.index_path + ".cleaned";
  out.time_side = segment.time_path + ".cleaned";
  bool done = false;
  struct Cleanup {
    CleanedSegment& c;
    bool& done;
    ~Cleanup() {
      if (!done) discard(c);
    }
  } cleanup{out, done};

  SegmentStream in(segment, options.io_buffer_bytes);
  auto opened = in.open();
  if (!opened) return unexpected(opened.error());
  if (!*opened) return std::optional<CleanedSegment>();
  auto side = FileHandle::open(out.log_side, O_RDWR | O_CREAT | O_TRUNC);
  if (!side) return unexpected(side.error());
  std::vector<std::byte> pending;
  pending.reserve(options.io_buffer_bytes);
  uint64_t flushed = 0;
  auto flush = [&]() -> LogResult<void> {
    if (pending.empty()) return {};
    if (auto r = detail::pwrite_full((*side)->fd(), pending, flushed); !r) return r;
    flushed += pending.size();
    pending.clear();
    return {};
  };
  detail::IndexBuilder indexes(segment.base_offset, options.index_interval_bytes);
  int64_t expect = segment.base_offset;  // the output must span exactly the segment's offsets
  std::string span_error;
  BatchCompactor compactor(filter, rules, scan, out.stats, [&](Bytes b) -> LogResult<void> {
    using namespace kafka::batch_layout;
    const auto base = load_be<int64_t>(b.data() + kBaseOffset);
    const int64_t last = base + load_be<int32_t>(b.data() + kLastOffsetDelta);
    if (base != expect) {
      return log_error(LogErrc::kInvalidArgument,
                       "compacted batches of " + segment.log_path + " leave a gap at " +
                           std::to_string(expect));
    }
    expect = last + 1;
    indexes.add(flushed + pending.size(), b.size(), base,
                load_be<int64_t>(b.data() + kMaxTimestamp));
    pending.insert(pending.end(), b.begin(), b.end());
    if (pending.size() >= options.io_buffer_bytes) return flush();
    return {};
  });
  while (true) {
    if (stop && stop->load(std::memory_order_relaxed)) return stopped();
    auto v = in.next();
    if (!v) return unexpected(v.error());
    if (!*v) break;
    if (auto r = compactor.add(**v); !r) return unexpected(r.error());
  }
  if (auto r = compactor.finish(); !r) return unexpected(r.error());
  if (auto r = flush(); !r) return unexpected(r.error());
  if (expect != segment.end_offset) {
    return log_error(LogErrc::kInvalidArgument, "compacted batches of " + segment.log_path +
                                                    " end at " + std::to_string(expect) +
                                                    ", not " + std::to_string(segment.end_offset));
  }
  // Same size or larger: not worth a rewrite, unless a producer's batch or a marker changed
  // (a marker goes only once the batches before it lost their transaction mark on disk).
  if (out.stats.bytes_after >= out.stats.bytes_before && out.stats.batches_converted == 0) {
    return std::optional<CleanedSegment>();
  }
  if (::fdatasync((*side)->fd()) != 0) return errno_error(errno, "fdatasync " + out.log_side);
  if (auto r = write_and_sync(out.index_side, indexes.index); !r) return unexpected(r.error());
  if (auto r = write_and_sync(out.time_side, indexes.time); !r) return unexpected(r.error());
  out.size_bytes = flushed;
  out.max_timestamp = indexes.prefix_max;
  out.index_entries = indexes.index.size() / kIndexEntryBytes;
  out.time_entries = indexes.time.size() / kTimeIndexEntryBytes;
  out.bytes_since_index = indexes.since_index;
  out.stats.segments_rewritten = 1;
  done = true;
  return std::optional<CleanedSegment>(std::move(out));
}

void discard(const CleanedSegment& cleaned) {
  for (const auto* path : {&cleaned.log_side, &cleaned.index_side, &cleaned.time_side}) {
    if (!path->empty()) ::unlink(path->c_str());
  }
}

LogResult<bool> compact_log(PartitionLog& log, const CompactionOptions& options,
                            CompactionStats& stats) {
  const std::vector<ClosedSegment> closed = log.closed_segments();
  if (closed.empty()) return false;
  const uint64_t history = log.history();
  OffsetMap map(options.map_bytes);
  const int64_t dirty_from = log.first_dirty_offset();
  auto map_end = build_offset_map(closed, dirty_from, map, options);
  if (!map_end) return unexpected(map_end.error());
  stats.keys_mapped += map.size();
  bool any = false, all = true;
  MarkerScan scan;
  for (const ClosedSegment& seg : closed) {
    if (seg.base_offset >= *map_end) break;
    auto cleaned = clean_segment(seg, map, *map_end, options, nullptr, &scan);
    if (!cleaned) return unexpected(cleaned.error());
    if (!*cleaned) continue;
    auto installed = log.install_cleaned_segment(**cleaned, history);
    if (!installed) return unexpected(installed.error());
    if (*installed != Installed::kInstalled) {
      all = all && *installed == Installed::kGone;
      continue;
    }
    stats.add((*cleaned)->stats);
    any = true;
  }
  if (all) log.set_first_dirty_offset(*map_end);
  return any;
}

// PartitionLog's compaction hooks (declared in log.h) ---------------------------------------

std::vector<ClosedSegment> PartitionLog::closed_segments(int64_t below) const {
  std::vector<ClosedSegment> out;
  for (const auto& seg : segments_) {
    // A run from the log start: a pass that skipped a segment not ready (one just closed whose
    // last sync is still to come, or a damaged one) and mapped beyond it would drop a tombstone
    // while the skipped segment still held an older value of its key, which would come back.
    if (seg->active || seg->unsynced || seg->dirty || seg->corrupt_from >= 0) break;
    if (seg->end_offset > durable_end_ || seg->end_offset > below) break;
    if (seg->end_offset <= seg->base_offset) continue;  // empty: nothing to map or clean
    out.push_back({seg->base_offset, seg->end_offset, seg->size_bytes, seg->log_path,
                   seg->index_path, seg->time_path});
  }
  return out;
}

int64_t PartitionLog::first_dirty_offset() const {
  return std::max(first_dirty_, log_start_);
}

void PartitionLog::set_first_dirty_offset(int64_t offset) { first_dirty_ = offset; }

LogResult<Installed> PartitionLog::install_cleaned_segment(const CleanedSegment& cleaned,
                                                           uint64_t history) {
  size_t i = 0;
  while (i < segments_.size() && segments_[i]->base_offset != cleaned.was.base_offset) ++i;
  if (failure_ || history != history_) {
    discard(cleaned);
    return Installed::kChanged;
  }
  if (i + 1 >= segments_.size()) {  // retention deleted it meanwhile (or it is the last)
    discard(cleaned);
    return i == segments_.size() ? Installed::kGone : Installed::kChanged;
  }
  const detail::Segment& s = *segments_[i];
  if (s.active || s.unsynced || s.dirty || s.corrupt_from >= 0 ||
      s.end_offset != cleaned.was.end_offset || s.size_bytes != cleaned.was.size_bytes ||
      s.log_path != cleaned.was.log_path) {  // found damaged, or not what was read
    discard(cleaned);
    return Installed::kChanged;
  }
  detail::Segment& seg = *segments_[i];
  // The scrubber's position in this segment means nothing in the rewritten one.
  if (scrub_segment_ == seg.base_offset) scrub_position_ = 0;
  files_changed();  // a read of the old file, in flight or done: not checked against the new
  // Batches of this segment (and any before it) move: the window of recent batches forgets them.
  while (!recent_.empty() && recent_.front().segment_base <= seg.base_offset) recent_.pop_front();
  for (const auto* path : {&seg.log_path, &seg.index_path, &seg.time_path}) fds_.forget(*path);
  // The old indexes go first: a crash from here on leaves recovery without them, and it
  // rebuilds them from whichever .log the renames left (old or new, both complete).
  ::unlink(seg.index_path.c_str());
  ::unlink(seg.time_path.c_str());
  const int64_t next_base = segments_[i + 1]->base_offset;
  // The new .log takes the old one's place in one step that keeps the old one under the side
  // file's name (RENAME_EXCHANGE): a rename over it would free its blocks in the call, here on
  // the log's thread (a 1 GiB segment: about a third of a second, with every fdatasync on the
  // volume waiting behind it). The old file then goes aside and is removed as retention
  // removes a segment (remove_through_ring). A file system without the exchange renames over.
  bool log_moved = false;
  bool exchanged = false;
  int log_errno = 0;
  if (::renameat2(AT_FDCWD, cleaned.log_side.c_str(), AT_FDCWD, seg.log_path.c_str(),
                  RENAME_EXCHANGE) == 0) {
    log_moved = exchanged = true;
  } else if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP) {
    log_moved = ::rename(cleaned.log_side.c_str(), seg.log_path.c_str()) == 0;
  }
  if (!log_moved) log_errno = errno;
  if (exchanged) {
    // Aside under a name no later pass writes (its own side file is `.cleaned` again); one left
    // by a crash goes when the log opens.
    const std::string aside = aside_name(seg.log_path);
    if (::rename(cleaned.log_side.c_str(), aside.c_str()) == 0) {
      remove_through_ring(aside, cleaned.was.size_bytes);
    } else {
      ::unlink(cleaned.log_side.c_str());  // the old blocks are freed here after all
    }
  }
  const bool indexes_moved =
      log_moved && ::rename(cleaned.index_side.c_str(), seg.index_path.c_str()) == 0 &&
      ::rename(cleaned.time_side.c_str(), seg.time_path.c_str()) == 0;
  // The renames reach the disk with the directory's fdatasync in the log's next flush round
  // (through the ring), not with an fsync here: until then a crash leaves the old segment,
  // whole, in place (its indexes rebuilt), which a later pass compacts again.
  dir_dirty_ = true;
  if (!indexes_moved) {
    // Whichever .log is in place (the old one, or the new one without its indexes): its
    // indexes are rebuilt from it, as recovery would.
    discard(cleaned);
    if (auto r = scan_and_rebuild(seg, /*may_cut=*/false, next_base); !r) {
      return unexpected(r.error());
    }
    if (!log_moved) return errno_error(log_errno, "rename " + cleaned.log_side);
    return Installed::kInstalled;
  }
  // Reads in flight keep the old file; new reads open the new one.
  seg.size_bytes = seg.written_bytes = cleaned.size_bytes;
  seg.max_timestamp = cleaned.max_timestamp;
  seg.index_entries = cleaned.index_entries;
  seg.time_entries = cleaned.time_entries;
  seg.bytes_since_index = cleaned.bytes_since_index;
  return Installed::kInstalled;
}

}  // namespace sluice::log

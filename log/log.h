// A partition's log: a directory of segments holding Kafka record batches v2 exactly as
// clients sent them (base offset and partition leader epoch stamped), with sparse offset and
// time indexes. Byte formats: FORMAT.md.
//
// Thread: owned by one shard; every call, and every callback, runs on that shard's thread
// (callbacks run inside IoRing::poll_completions()/wait()). Not thread-safe.
//
// Durability: append() callbacks run, by default (FlushMode::kEveryBatch), only once the
// batches are on disk (fdatasync). Appends in flight share fdatasyncs (group commit): while
// one fdatasync runs, later appends wait for the next one, which covers all of them. A
// failed write or fdatasync stops the partition: every later call fails with that error,
// since what is on disk is unknown.
//
// Reads return file ranges, not bytes: the broker sends them with sendfile(). A FileRange
// keeps its file open, so retention or truncation meanwhile cannot make it dangle (the bytes
// of a truncated range may change, deleted ones stay readable).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/ids.h"
#include "log/errc.h"
#include "log/fd_cache.h"
#include "log/format.h"
#include "log/io_ring.h"

namespace sluice::log {

enum class FlushMode : uint8_t {
  kEveryBatch,  // fdatasync before an append's callback runs (default; acks=all safe)
  kInterval,    // fdatasync from tick() every interval_ms; callbacks run once written
  kNever,       // leave it to the kernel; callbacks run once written
};

struct FlushPolicy {
  FlushMode mode = FlushMode::kEveryBatch;
  int64_t interval_ms = 1000;  // for kInterval
};

// How much recovery verifies at open (FORMAT.md, "Recovery").
enum class RecoveryScan : uint8_t {
  kUnflushed,  // CRC-scan the segments that may hold unsynced bytes (default)
  kAll,        // CRC-scan every segment (slow; for tools and after suspected bit rot)
};

struct LogConfig {
  uint64_t segment_bytes = 1ull << 30;            // log.segment.bytes
  int64_t segment_ms = 7ll * 24 * 3600 * 1000;    // log.roll.ms; <= 0: never by age
  uint32_t index_interval_bytes = 4096;           // index.interval.bytes
  int64_t retention_bytes = -1;                   // retention.bytes; < 0: unlimited
  int64_t retention_ms = 7ll * 24 * 3600 * 1000;  // retention.ms; < 0: unlimited
  FlushPolicy flush;
  bool preallocate = true;  // fallocate the active segment ahead of its writes, growing
  // Instead of fallocate: write zeros ahead of the active segment's appends (a few MiB, through
  // the ring, then fdatasync them), so that an append's fdatasync overwrites blocks that are
  // allocated and written already and updates no metadata (no extent conversion, no new
  // size): one data write and a cache flush instead of a metadata write between them. Costs
  // the zeros' writes (the data's bytes once more). Appends never wait for it except one that
  // reaches a range still being zeroed: its write goes once the zeros are in. Only with
  // FlushMode::kEveryBatch, and only while the log's syncs are small (log/README.md).
  bool zero_ahead = false;
  RecoveryScan recovery_scan = RecoveryScan::kUnflushed;
  uint32_t inflight_appends_max = 1024;  // append() returns kBusy above this
  // FlushMode::kEveryBatch: fdatasync rounds in flight at once. With 1, appends that complete
  // while a round runs wait for the next one (group commit); with more, a round starts for
  // them at once and runs beside the others (on disks where syncs side by side finish sooner
  // than one after the other). Rounds complete in order: one vouches for the log up to its
  // target only once those before it did.
  uint32_t flush_rounds_max = 1;
  std::function<int64_t()> clock_ms;     // wall clock for rolls and retention; default: system
};

// One problem recovery found and what it did about it.
struct RecoveryIssue {
  enum class Kind : uint8_t {
    kTornTail,       // the active segment's tail was an incomplete write: truncated
    kCorruptTail,    // the active segment had bad bytes followed by more: truncated there
    kCorruptClosed,  // a closed segment fails its checks: reads stop before `offset`
    kIndexRebuilt,   // an index or time index did not match its segment: rebuilt
  };
  Kind kind;
  int64_t segment_base_offset = 0;
  int64_t offset = 0;     // first offset not kept / not served
  uint64_t position = 0;  // byte position in the segment's .log file
  uint64_t bytes_removed = 0;
  std::string detail;
};

struct RecoveryReport {
  bool clean_shutdown = false;
  uint64_t segments = 0;
  uint64_t segments_scanned = 0;  // CRC-checked batch by batch
  std::vector<RecoveryIssue> issues;
};

struct AppendOptions {
  int32_t leader_epoch = -1;  // stamped in every batch when >= 0 (the Raft term)
  // The batches already carry their offsets (a Raft entry stamped by its leader): each batch's
  // base offset must be the log end at its turn (kInvalidBatch otherwise, before anything is
  // written) and nothing is written into the caller's buffer, which other threads may read.
  bool stamped = false;
  // The caller checked every batch's CRC just before (the leader's Produce path, or batches it
  // built itself): the log checks framing and sizes but does not read the records again.
  // Batches from anywhere else (a follower's entries from its leader, recovery) leave it false.
  bool crc_checked = false;
  // The caller retries on kBusy (a Raft replica's persist step): an append that must roll to a
  // new segment first has the new segment's files opened (created, truncated) through the ring
  // and returns kBusy meanwhile, instead of opening them on the calling (shard) thread; the
  // retry finds them open. Every roll of one append goes so (segments smaller than the append
  // roll more than once), up to 16 rolls: an append of several parts that would roll more
  // takes only the parts that fit (AppendResult::parts; the caller appends the rest next), and
  // only a single part rolling more than 16 times opens the rolls past the 16th at once.
  bool roll_async = false;
};

struct AppendResult {
  Offset base_offset;  // first offset of the first batch
  Offset last_offset;  // last offset of the last batch
  Offset end_offset;   // last_offset + 1: the log end once this append is in
  uint64_t bytes = 0;
  // How many of the parts given went in: all, but with AppendOptions::roll_async (a leading
  // run of them, at least one).
  size_t parts = 0;
};
using AppendCallback = std::function<void(const LogResult<AppendResult>&)>;
using DurableCallback = std::function<void(const LogResult<Offset>&)>;

// Bytes [position, position + length) of a segment file: whole batches, ready for sendfile.
struct FileRange {
  std::shared_ptr<FileHandle> file;
  uint64_t position = 0;
  uint64_t length = 0;
  int fd() const { return file->fd(); }
};

struct ReadResult {
  std::vector<FileRange> ranges;  // in log order; empty when nothing is readable
  Offset first_offset{-1};        // base offset of the first batch (may be < from_offset)
  Offset next_offset{-1};         // one past the last offset returned: where to read next
  uint64_t bytes = 0;
  // The first ranges hold only batches compaction emptied (a segment of them each): a Fetch
  // may answer from the range after them, as Kafka's reads skip segments its cleaner emptied.
  size_t empty_ranges = 0;
  // The range a Fetch answers from: the first holding a record (the last if none does), and
  // the base offset of its first batch.
  size_t answer_index() const { return std::min(empty_ranges, ranges.size() - 1); }
  const FileRange& answer() const { return ranges[answer_index()]; }
  Offset answer_first_offset{-1};
};

// One stored batch and where it lies: sent as it is, e.g. from the file with sendfile.
struct StoredBatch {
  Offset base_offset;
  Offset last_offset;
  int32_t leader_epoch = -1;
  FileRange range;  // the whole batch
};

// The header fields of one stored batch.
struct BatchInfo {
  Offset base_offset;
  Offset last_offset;
  int32_t leader_epoch = -1;  // the Raft term it was appended in
  int64_t max_timestamp = 0;
  uint64_t size_bytes = 0;
};

// One step of the background check of closed segments (scrub()).
struct ScrubResult {
  uint64_t bytes_checked = 0;  // checked in this call (what the previous call's read brought)
  uint64_t bytes_read = 0;     // asked of the disk by this call (its read, in the ring)
  std::vector<RecoveryIssue> issues;  // kCorruptClosed: newly found damage, no longer served
  bool round_done = false;            // the step reached the end of the closed segments
};

struct RetentionResult {
  uint64_t segments_deleted = 0;
  uint64_t bytes_deleted = 0;
};

struct ClosedSegment {
  int64_t base_offset = 0;
  int64_t end_offset = 0;
  uint64_t size_bytes = 0;
  std::string log_path, index_path, time_path;
};
struct CleanedSegment;
// What became of a cleaned segment (PartitionLog::install_cleaned_segment).
enum class Installed : uint8_t {
  kInstalled,
  kGone,     // its segment was deleted meanwhile (retention): nothing to do
  kChanged,  // the log's history or the segment changed: the pass must be done again
};

namespace detail {
struct Segment;
struct BatchHeader;
}  // namespace detail

// Descriptors: the active segment's three files, partition.meta and the directory are open
// while the log is in use; an idle log (nothing in flight, everything durable) gives them back
// when its FdCache asks (FdHolder) and reopens them on its next append, truncation or flush.
// Closed segments are read through the FdCache. So an idle partition holds no descriptor.
class PartitionLog final : public FdHolder, public ColdHolder {
 public:
  // Opens (creating if needed) the partition in `dir` and recovers it. `ring` and `fds`
  // belong to the shard and must outlive the log.
  static LogResult<std::unique_ptr<PartitionLog>> open(const std::filesystem::path& dir,
                                                       const LogConfig& config, IoRing& ring,
                                                       FdCache& fds);
  // Requires idle(). Does not close cleanly: call close() for that.
  ~PartitionLog() override;
  PartitionLog(const PartitionLog&) = delete;
  PartitionLog& operator=(const PartitionLog&) = delete;

  // Appends the record batches concatenated in `batches` (one or many, as a Produce request
  // carries them). Each is checked (header, magic 2, CRC-32C) before anything is written;
  // then base offsets (and the leader epoch if given) are stamped in place, in the caller's
  // buffer, which is written as is and must stay valid until `done` runs. Returns the
  // assigned offsets at once; `done` runs when the batches are durable (kEveryBatch) or
  // written (other modes), in append order.
  LogResult<AppendResult> append(MutableBytes batches, const AppendOptions& options,
                                 AppendCallback done);
  // The same for batches in several buffers (e.g. Raft entries), all checked before any is
  // written; one callback for all of them.
  LogResult<AppendResult> append(std::span<const MutableBytes> parts, const AppendOptions& options,
                                 AppendCallback done);

  // Whole batches from the one containing `from_offset`, up to `max_bytes` (but always at
  // least one batch when one is readable) and only batches that end before `max_offset`
  // (e.g. the high watermark). Only written bytes are served. kOffsetOutOfRange outside
  // [log_start_offset, log_end_offset]; kCorrupt when `from_offset` is in a damaged part.
  LogResult<ReadResult> read(Offset from_offset, uint64_t max_bytes,
                             std::optional<Offset> max_offset = std::nullopt);
  // The batches read() returns, each with its header fields and place in its file; nothing
  // is read but the batch headers (and those not for recent batches). Their CRCs are not
  // checked: whoever receives them must (a follower checks every batch of its leader's).
  LogResult<std::vector<StoredBatch>> read_batches(Offset from_offset, uint64_t max_bytes,
                                                   std::optional<Offset> max_offset = std::nullopt);
  // read() without blocking the calling thread (a Fetch on a shard). Reads older than the
  // window of recent batches need index entries and batch headers from the files, and the
  // segment's read handle: those are brought through the ring (opens and reads) into a small
  // per-log cache (a few segments' indexes and a few 64 KiB pieces of .log files), and the read
  // runs on it; an answer then reads ahead what a consumer's next read, from where this one
  // ended, will want. `done` runs once: at once when nothing had to be read, else from a ring
  // completion, on this thread. Stops at the end of the first segment it reads from (as
  // Kafka does; the next read goes on from there). After a few rounds that still lack
  // something it answers with what the cache holds, and with no batch at all, reads the files
  // (counted in cold_read_stats().blocking_reads).
  using ReadCallback = std::function<void(LogResult<ReadResult>)>;
  void read_async(Offset from_offset, uint64_t max_bytes, std::optional<Offset> max_offset,
                  ReadCallback done);
  // read_batches() for a caller that must not block its thread either (Raft's catch-up reads,
  // on a shard): the batches the open handles and read_async()'s cache give at once, which
  // may be fewer than read_batches() gives, or none. When the answer is short for want of
  // something, and `more` is set, that is brought through the ring (pieces of the .log of up
  // to 256 KiB: every batch's header is wanted) and `pending` is true: `more` runs once, from
  // a ring completion on this thread (never from within this call), when it is there or
  // failed, and the caller asks again. What another such read's loads are bringing already is
  // not sent again (an answer short only for that is not pending: the other's `more` comes). `short_before` is how many such loads in a row were
  // followed by an answer with nothing: from the fifth on, an empty answer reads the files instead
  // (counted in cold_read_stats().blocking_reads), so that neither a cache that other reads
  // keep replacing nor a file that cannot be read holds it up forever; read errors are then
  // reported as read_batches() reports them.
  struct BatchesNow {
    std::vector<StoredBatch> batches;
    bool pending = false;  // `more` will run
  };
  LogResult<BatchesNow> read_batches_now(Offset from_offset, uint64_t max_bytes,
                                         std::optional<Offset> max_offset, int short_before,
                                         std::function<void()> more);
  struct ColdReadStats {
    uint64_t loads = 0;           // opens and reads sent through the ring (and read_batches_now)
    uint64_t blocking_reads = 0;  // read_async (read_batches_now) calls that read the files
    // Lookups that opened or read a file on the calling thread (read(), read_batches(),
    // batch_at() older than the window, and read_async's last resort): for tests.
    uint64_t file_lookups = 0;
    uint64_t cached_bytes = 0;    // held in the cache now
  };
  ColdReadStats cold_read_stats() const;
  // Like read(), copying the bytes and checking every batch's CRC (tests and tools).
  LogResult<std::vector<std::byte>> read_copy(Offset from_offset, uint64_t max_bytes,
                                              std::optional<Offset> max_offset = std::nullopt);

  // The batch containing `offset` (which must be written and >= the log start), e.g. for
  // Raft's term of an entry.
  LogResult<BatchInfo> batch_at(Offset offset);

  // The first offset whose record timestamp is >= `timestamp_ms`; nullopt if none.
  LogResult<std::optional<Offset>> offset_for_timestamp(int64_t timestamp_ms);
  // offset_for_timestamp() without blocking the calling thread (ListOffsets on a shard), with
  // the record's timestamp (for a batch with LogAppendTime, the batch's): the segment's time
  // index, index entries, batch headers and the batch found are brought through the ring into
  // the cold-read cache in rounds, as read_async() does. `done` runs once: at once when nothing
  // had to be read, else from a ring completion, on this thread. After a few rounds that still
  // lack something it reads the files (cold_read_stats().blocking_reads).
  struct TimedOffset {
    Offset offset;
    int64_t timestamp = -1;
  };
  using TimestampCallback = std::function<void(LogResult<std::optional<TimedOffset>>)>;
  void offset_for_timestamp_async(int64_t timestamp_ms, TimestampCallback done);

  Offset log_start_offset() const { return Offset(log_start_); }
  Offset log_end_offset() const { return Offset(end_offset_); }   // next offset to assign
  Offset written_offset() const { return Offset(written_end_); }  // all before it written
  Offset durable_offset() const { return Offset(durable_end_); }  // all before it fdatasync'd

  // Runs `done` once every offset below `offset` is durable (at once if already), starting
  // an fdatasync if needed whatever the flush policy. Fails if the partition stopped.
  void when_durable(Offset offset, DurableCallback done);
  // After an append answered kBusy: runs `wake` once something it waited for completed (a
  // write, a roll's files opening, a cut), so the caller retries then instead of polling; a
  // retry may find the log still busy and ask again. At once if nothing is in flight. `wake`
  // runs inside a ring completion: it must not call into the log (post the retry instead).
  void when_appendable(std::function<void()> wake);
  // Runs `wake` once no ring operation of this log is in flight (idle()): at once if none is,
  // otherwise inside the completion of the last one (the same rule as when_appendable).
  void when_idle(std::function<void()> wake);
  // Starts an fdatasync of everything written (e.g. Raft's must_sync). Callback optional.
  void flush(DurableCallback done = {});
  // For FlushMode::kInterval: flushes when interval_ms passed since the last flush.
  void tick();

  // Removes every offset >= `offset` (rounded down to the start of the batch containing it).
  // Needs no append in flight (kBusy otherwise). Returns the new log end.
  LogResult<Offset> truncate_suffix(Offset offset);
  // truncate_suffix without blocking the calling thread, for the common cut: inside the active
  // segment's recent batches (a Raft follower dropping an uncommitted suffix). The log's state
  // is cut at once (its end, reads and batch_at see the new end; the index counts and the
  // segment's maximum timestamp come from the window, not the files); the three files'
  // ftruncates and the durable write of the lowered recovery point go through the ring, and
  // appends answer kBusy until they completed. Then `done` runs (inside the ring's
  // completions) with the new end, or with the error that stopped the partition. Any other
  // cut (into an earlier segment, older than the window) is truncate_suffix's, blocking to
  // find what it keeps (index and header preads), but its files' ftruncates (the .log's frees
  // the cut tail's blocks, up to a segment) and the meta's sync go through the ring as well
  // (appends kBusy meanwhile), and `done` runs once they completed. Needs idle()
  // (kBusy otherwise); when this returns an error, `done` never runs.
  LogResult<Offset> truncate_suffix_async(Offset offset, DurableCallback done);
  // Removes everything from where the first damaged closed segment's damage starts (see
  // scrub(); recovery finds such damage too): a replica that gets the rest again from its
  // peers. Needs no append in flight (kBusy otherwise). Returns the new log end (the same
  // end when nothing is damaged).
  LogResult<Offset> truncate_damage();
  // Moves the log start to `offset` and deletes the segments wholly below it. Past the log
  // end, the log is emptied and restarts at `offset` (a Raft snapshot); that needs idle().
  LogResult<void> advance_log_start(Offset offset);
  // Deletes the oldest closed, durable segments beyond retention.bytes / retention.ms. The
  // segments' files go through the ring; a large .log file is cut a step at a time before its
  // unlink, 12 passes after it left the log (log/README.md "Retention"): call it regularly.
  LogResult<RetentionResult> apply_retention();
  // New segment size and age and retention limits (a topic's or the broker's settings
  // changed): the next append and retention pass use them; the rest of the config stays.
  void set_limits(const LogConfig& config);

  // Writes what is buffered, trims preallocated space, fdatasyncs and marks the directory
  // as cleanly shut down. Needs idle(); blocking (shutdown only).
  LogResult<void> close();

  // Compaction hooks (log/compaction.h; defined in compaction.cc). Closed segments that are
  // durable and undamaged and end at or below `below` (a replica's commit index), oldest first:
  // the run of them from the log start, up to the first that is not.
  std::vector<ClosedSegment> closed_segments(int64_t below = INT64_MAX) const;
  // The first offset no compaction pass has mapped yet (the log start at first). Truncation
  // and a restarted log move it back.
  int64_t first_dirty_offset() const;
  void set_first_dirty_offset(int64_t offset);
  // Counts the times the log's history was rewritten (a truncation, a restart at a snapshot):
  // a compaction pass's map is only good for the history it was built from.
  uint64_t history() const { return history_; }
  // Installs a segment cleaned beside itself (renames, one directory fsync; no reading), unless
  // the log's history is no longer `history` or the segment changed since it was read (then its
  // side files are removed).
  LogResult<Installed> install_cleaned_segment(const CleanedSegment& cleaned, uint64_t history);

  // Checks the CRC of the batches of closed, durable segments, about `max_bytes` of them (at
  // least one batch), from where the previous call stopped, wrapping around at the end. A
  // batch that fails its checks marks the rest of its segment as damaged, exactly as recovery
  // would (kCorrupt for reads from there; never served) and is reported once. Nothing blocks:
  // each call checks what the previous call's read brought and sends the next read (of at
  // most `max_bytes`, or one batch) through the ring; a segment without a cached read handle
  // is opened through the ring first. Call it again (a tick later) for the results.
  LogResult<ScrubResult> scrub(uint64_t max_bytes);

  bool idle() const;  // nothing of this log in flight in the ring
  size_t ops_in_flight() const { return ops_in_flight_; }
  // FdHolder: closes the active segment's, partition.meta's and the directory's descriptors
  // when idle and everything written is durable. Reads and later writes reopen them.
  bool release_fds() override;
  bool holds_fds() const;  // the active segment's read-write descriptors are open
  FdCache& fd_cache() { return fds_; }
  // Reopens what release_fds() closed (the active segment's read-write handles) and marks
  // the log used in the FdCache; at EMFILE, asks the cache to trim and tries once more. A
  // failure does not stop the partition. Appends and truncations call it themselves.
  LogResult<void> reopen_fds();
  // The same through the ring (no open on the calling thread): `done(0)` once the handles are
  // open, at once if they are; `done(-errno)` if an open failed (EMFILE: trim and try again).
  // `done` runs inside a ring completion: post what it starts.
  void reopen_fds_async(std::function<void(int32_t)> done);
  // While kept (a Raft replica persisting a Ready into it), release_fds() refuses.
  void keep_fds(bool keep) { keep_fds_ = keep; }
  const RecoveryReport& recovery_report() const { return report_; }
  const std::filesystem::path& dir() const { return dir_; }
  uint64_t segment_count() const;
  uint64_t size_bytes() const;  // of all segments
  std::vector<int64_t> segment_base_offsets() const;
  bool failed() const { return failure_.has_value(); }
  // Why the partition stopped (kNoSpace: a full disk; nothing was acknowledged that is not
  // on disk, so reopening it is safe once there is room).
  std::optional<LogErrc> failure_code() const {
    return failure_ ? std::optional<LogErrc>(failure_->code) : std::nullopt;
  }
  uint64_t flush_count() const { return flush_count_; }  // fdatasync rounds started
  // LogConfig::zero_ahead: data writes waiting for the zeros being written under them.
  size_t held_writes() const { return held_writes_.size(); }
  size_t flushes_in_flight() const { return flush_rounds_.size(); }  // rounds not counted yet
  // Logs of this process stopped so far (any thread): lets an owner of many logs look for
  // stopped ones only after one stopped.
  static uint64_t stops_so_far();

 private:
  // A data write held back until the zeros in flight under it are written (zero_ahead).
  struct HeldWrite {
    int64_t segment_base;
    std::shared_ptr<FileHandle> file;
    Bytes bytes;
    uint64_t position;
    uint64_t seq;
  };
  struct PendingWrite {
    uint64_t seq;
    int64_t segment_base;
    uint64_t end_position;
    int64_t end_offset;
    bool done = false;
    bool failed = false;
    bool linked = false;  // in a chain: the linked flush after it syncs it
  };
  // A round of fdatasyncs in flight, vouching for the log up to `target` once it and every
  // round before it completed.
  struct FlushRound {
    uint64_t id;
    int64_t target;
    size_t pending;  // fdatasyncs not completed
    int32_t result = 0;
    bool linked = false;         // after its chain's writes (IoRing::write_then_fdatasync)
    int64_t linked_segment = -1;  // the segment a linked round syncs
    bool done = false;
    bool vouches = true;  // false: an earlier linked round's write was cut short and goes again
  };
  struct AppendWaiter {
    int64_t end_offset;
    AppendResult result;
    AppendCallback done;
  };
  PartitionLog(std::filesystem::path dir, const LogConfig& config, IoRing& ring, FdCache& fds);

  LogResult<void> recover();
  // Both return whether the log was cut at this segment (later segments must go).
  LogResult<bool> recover_segment(detail::Segment& seg, bool last, bool clean, int64_t next_base);
  LogResult<bool> scan_and_rebuild(detail::Segment& seg, bool may_cut, int64_t next_base);
  LogResult<void> check_segment(detail::Segment& seg, int64_t next_base);
  // `now`: blocking preallocation (open, truncation); otherwise it goes through the ring.
  LogResult<void> open_active(detail::Segment& seg, bool now);
  // partition.meta and the directory, opened on demand.
  LogResult<int> meta_fd();
  LogResult<int> dir_fd();
  LogResult<void> create_segment(int64_t base_offset, bool now);
  LogResult<void> roll();
  // AppendOptions::roll_async: the base offsets of the segments this append would roll to, in
  // order (none: it fits the active segment), for the batches of `parts` (their sizes in
  // `sizes`) at time `now`; at most kPreparedRollsMax of them. `parts_within`: how many
  // leading parts need no more rolls than that (all of them, or fewer; at least one).
  struct Rolls {
    std::vector<int64_t> bases;
    size_t parts_within;
  };
  Rolls rolls(std::span<const MutableBytes> parts, std::span<const uint64_t> sizes,
              int64_t now) const;
  // Opens the files of the segment at `base` through the ring (into next_).
  void prepare_next(int64_t base);
  struct NextSegment;
  // The prepared segment at `base` (nullptr: none).
  NextSegment* prepared(int64_t base) const;
  // Forgets next_: closes its descriptors and removes its files (nothing was written to them).
  void discard_next();
  void discard_prepared(NextSegment& next);
  // Sealed: the preallocated tail of `seg`'s .log file is cut through the ring.
  void trim(detail::Segment& seg);
  void on_trimmed(int64_t segment_base, int32_t result);
  void preallocate(detail::Segment& seg, uint64_t needed, bool now);
  // LogConfig::zero_ahead: zeros the next step ahead of `needed` when what is zeroed runs low.
  void zero_ahead(detail::Segment& seg, uint64_t needed);
  void on_zeroed(int64_t segment_base, uint64_t target, int32_t result);
  // `now`: write the sealing time entry with a blocking pwrite (close()); otherwise it goes
  // through the ring like every index entry.
  LogResult<void> seal(detail::Segment& seg, bool now);
  // `through_ring`: the unlinks go through the ring (only for names no later segment can
  // take: below the log start); otherwise at once.
  void delete_segment_files(detail::Segment& seg, bool through_ring = false);
  // For a segment past a cut (truncate_suffix): each file renamed aside (`<name>.<n>.deleted`,
  // a name no later segment takes and that recovery removes) and removed through the ring.
  // Removing the files at once freed a whole segment's blocks on the calling (shard) thread.
  void set_aside_segment_files(detail::Segment& seg);
  // A file removed through the ring: a large .log file is cut a step at a time first, so that
  // freeing its blocks never holds the file system's journal long (fdatasyncs wait for it).
  void remove_gradually(const std::string& path, uint64_t size);
  // Starts the removals whose delay has passed (retention passes call it).
  void start_due_removals();
  // Removed segments' .log files waiting for their delay (kRemoveDelayPasses in log.cc) before
  // the cut that frees them: by the retention pass they are due at.
  struct PendingRemoval {
    std::string path;
    uint64_t size;
    uint64_t due_pass;
  };
  std::deque<PendingRemoval> removals_;
  // Removes a file below the log start (or set aside) through the ring: a file of more than
  // kRemoveStepBytes (`size`) joins removals_ (cut a step at a time, kRemoveDelayPasses
  // retention passes from now), a smaller one is unlinked at once.
  void remove_through_ring(const std::string& path, uint64_t size);
  uint64_t aside_files_ = 0;  // files set aside so far (their names: compaction, cuts)
  // A name to set `path` aside under: `<path>.<n>.deleted`, which no segment takes and
  // recovery removes.
  std::string aside_name(const std::string& path);
  uint64_t retention_passes_ = 0;  // apply_retention() calls
  void on_removed(const std::string& path, int32_t result);
  LogResult<void> write_meta(bool sync);
  // write_meta(false) through the ring (the recovery point moving as segments become durable,
  // on the produce path): not synced, a hint like every unsynced meta write.
  void write_meta_async();

  LogResult<void> validate(Bytes batches, bool check_crc, std::vector<uint64_t>& sizes) const;
  // append() once `batches` passed validate(), whose batch sizes are `sizes`.
  LogResult<AppendResult> append_validated(MutableBytes batches, std::span<const uint64_t> sizes,
                                           const AppendOptions& options, int64_t now,
                                           AppendCallback done);
  LogResult<void> add_index_entries(detail::Segment& seg, uint64_t position, int64_t base,
                                    int64_t last, int64_t max_ts, uint64_t size);
  void submit_write(detail::Segment& seg, Bytes bytes, uint64_t position, int64_t end_offset);
  // Index entries: queued on the segment, written through the ring one write per file at a time.
  // The active segment's wait (README "Index entries written late") until cold reads need
  // them (index_due), the log goes idle (op_done) or the segment closes; `now` writes them.
  void queue_index(detail::Segment& seg, bool time, Bytes entry);
  void pump_index(detail::Segment& seg, bool time, bool now = false);
  void pump_indexes(detail::Segment& seg, bool now = false);  // both files'
  // Closes every read-write handle, partition.meta's and the directory's; drops the cold cache.
  void close_handles();
  bool index_due(const detail::Segment& seg, bool time) const;
  // The active segment's entries still waiting, through the ring (the log went idle).
  void pump_late_index();
  void on_index_written(int64_t segment_base, bool time, int32_t result);
  void on_fallocate_done(int64_t segment_base, uint64_t target, int32_t result);
  // A closed segment whose data, indexes and trim are all done: ready for its last fdatasync.
  static bool closed_ready(const detail::Segment& seg);
  bool side_ops_idle() const;  // no index write or fallocate in flight in any segment
  // The window of recent batches (below): reads and batch lookups without touching the files.
  LogResult<ReadResult> read_recent(int64_t from, uint64_t max_bytes, int64_t limit,
                                    std::vector<StoredBatch>* batches);
  // Cold reads (outside the recent window): the furthest indexed batch start after `pos` (a
  // batch start) such that the batches before it fit in `room` bytes, end below `limit` and
  // are readable; nullopt when none does. One pread of the entries from `first_entry` on.
  std::optional<IndexEntry> index_jump(const detail::Segment& seg, uint64_t first_entry,
                                       uint64_t pos, uint64_t room, int64_t limit,
                                       uint64_t readable);
  // read(), and each batch's place in `batches` when not null.
  LogResult<ReadResult> read_ranges(Offset from_offset, uint64_t max_bytes,
                                    std::optional<Offset> max_offset,
                                    std::vector<StoredBatch>* batches);

  // read_async() (log_cold_read.cc). While one of its rounds runs read_ranges()
  // (cold_misses_ set), the read handle, index entries and batch headers come from the cache
  // and the handles already open only; what is missing is noted in *cold_misses_ and the
  // lookup fails. The round then brings what was missing through the ring and tries again.
  struct ColdMiss {
    enum class Kind : uint8_t { kLogFile, kIndex, kChunk, kTime } kind;
    int64_t segment_base = 0;
    uint64_t first = 0;  // kIndex, kTime: entries [first, last); kChunk: bytes [first, last)
    uint64_t last = 0;
    bool operator==(const ColdMiss&) const = default;
  };
  std::vector<ColdMiss>* cold_misses_ = nullptr;
  struct ColdCache {
    // The first index entries (kIndexEntryBytes each) of a few segments, so that readers in
    // different segments (consumers, a lagging follower) keep theirs; the least recently used
    // slot goes to the next segment loaded, and slots beyond 4 MiB of entries in all go.
    struct IndexSlot {
      int64_t segment = -1;
      std::vector<std::byte> entries;
      uint64_t used = 0;  // `clock` at its last use
    };
    std::array<IndexSlot, 4> index;
    uint64_t clock = 0;
    // One segment's time index entries (kTimeIndexEntryBytes each): ListOffsets by time.
    int64_t time_segment = -1;
    std::vector<std::byte> time;
    struct Chunk {
      int64_t segment_base;
      uint64_t position;
      std::vector<std::byte> bytes;
    };
    std::deque<Chunk> chunks;  // pieces of .log files, the newest at the back
    // The .log read handle opened last (also adopted by the FdCache, which may evict it).
    // Weak: the FdCache and the reads using it keep it open (ColdRead::handle). Kept here,
    // each of 5,000 logs a start-up read had touched held a descriptor outside every cap,
    // and the broker reached its open-files limit (accept() failed).
    std::weak_ptr<FileHandle> log_handle;
    int64_t log_handle_segment = -1;
    bool used = false;         // since the last retention pass (an unused cache is dropped)
  };
  ColdCache cold_;
  ColdReadStats cold_stats_;
  struct ColdRead;
  void cold_round(std::shared_ptr<ColdRead> read);
  // Sends the loads of `misses` (each once) for `read`, which counts them (+1 that the caller
  // ends with cold_loaded(): then the last one in finishes the read).
  void cold_bring(const std::vector<ColdMiss>& misses, const std::shared_ptr<ColdRead>& read);
  // The size of the piece of a .log file a missing header brings: 64 KiB for a Fetch (the
  // headers around its run's ends), more while read_batches_now() runs (every header).
  uint64_t cold_piece_bytes_ = 64 * 1024;
  void cold_load(const ColdMiss& miss, const std::shared_ptr<ColdRead>& read);
  void cold_loaded(const std::shared_ptr<ColdRead>& read);
  // The piece of `seg` whose headers a read of `max_bytes` from byte `position` will want at
  // its end (at the last index entry within reach), when the cache lacks it: read-ahead.
  std::optional<ColdMiss> cold_ahead(const detail::Segment& seg, uint64_t position,
                                     uint64_t max_bytes) const;
  // What a read that ended at `position` of the segment holding `offset` lets one foresee the
  // next read (from there, as a consumer's) will want: cold_ahead(), or at a segment's end
  // the next segment's index and first piece.
  std::vector<ColdMiss> cold_read_ahead(int64_t offset, uint64_t position, uint64_t max_bytes);
  // The index entries a cold read of `seg` searches: those of batches older than the window.
  uint64_t cold_index_needed(const detail::Segment& seg) const;
  // The cache's index entries of `seg` (0 when it holds none), and where they are (null).
  uint64_t cold_cached_entries(const detail::Segment& seg) const;
  const std::byte* cold_index_data(const detail::Segment& seg) const;
  const ColdCache::IndexSlot* cold_index_slot(int64_t segment_base) const;
  ColdCache::IndexSlot* cold_index_slot(int64_t segment_base);
  // Index entries [first, first + bytes) of the segment at `segment_base` were read: they
  // extend its slot, or (first 0) take the least recently used one.
  void cold_index_loaded(int64_t segment_base, uint64_t first, std::vector<std::byte> bytes);
  // The number of the first `n` cached entries of `seg` whose offset (by_position: position)
  // is below `bound` (+1 for <=), by binary search: they are sorted by both.
  uint64_t cold_count_below(const detail::Segment& seg, uint64_t n, uint64_t bound,
                            bool by_position) const;
  // The cached piece of `seg` holding the batch header at `position`, or null.
  const std::byte* cold_header(const detail::Segment& seg, uint64_t position) const;
  // The cached piece of `seg` holding the `size` bytes at `position`, or null.
  const std::byte* cold_bytes(const detail::Segment& seg, uint64_t position, uint64_t size) const;
  // A read handle of `seg` already open (its own, the FdCache's, the cache's), or null.
  std::shared_ptr<FileHandle> open_read_handle(const detail::Segment& seg);
  bool cold_touched_ = false;  // the running round used the cache
  std::vector<ColdMiss> cold_loading_;  // loads in flight (their reads' misses)
  void cold_open(const std::string& path, const std::shared_ptr<ColdRead>& read,
                 std::function<void(std::shared_ptr<FileHandle>)> then);
  void drop_cold_cache();
  void drop_cold() override { drop_cold_cache(); }  // the shard's ColdBudget is over its limit
  // Tells the shard's ColdBudget what the cache holds now (after each change).
  void charge_cold();
  // The lookups read_ranges() makes, from the files or (in a round of read_async) the cache.
  LogResult<std::shared_ptr<FileHandle>> read_handle(const detail::Segment& seg);
  // The number of index entries below `offset` (entries on disk, and in a cold round only
  // those of batches older than the window), and the last of them in *floor when there is one.
  LogResult<uint64_t> index_entries_below(const detail::Segment& seg, int64_t offset,
                                          IndexEntry* floor);
  LogResult<detail::BatchHeader> header_at(const detail::Segment& seg, const FileHandle& file,
                                           uint64_t position, uint64_t readable);
  // The last time index entry of `seg` whose timestamp is below `timestamp_ms` (on disk; in a
  // cold round, from the cache), or nullopt.
  LogResult<std::optional<TimeEntry>> time_floor_of(const detail::Segment& seg,
                                                    int64_t timestamp_ms);
  // `size` bytes at `position` of `seg`'s .log: read into `buffer`, or in a cold round a view
  // of the cached piece holding them.
  LogResult<Bytes> bytes_at(const detail::Segment& seg, const FileHandle& file, uint64_t position,
                            uint64_t size, std::vector<std::byte>& buffer);
  // offset_for_timestamp()'s search, by the lookups above.
  LogResult<std::optional<TimedOffset>> find_timestamp(int64_t timestamp_ms);
  void timestamp_round(int64_t timestamp_ms, std::shared_ptr<TimestampCallback> done, int round);
  void prune_recent();
  void on_write_done(uint64_t seq, int32_t result);
  // Linked flushes (acks=all's common case): an append made while everything before it is
  // durable and nothing is in flight sends its writes and their fdatasync in one chain
  // (IoRing::write_then_fdatasync) instead of waiting for the writes to start the flush.
  // begin_chain() before an append's writes, end_chain() after them; a roll in between sends
  // the writes gathered so far unlinked, and the flush then goes as usual.
  void begin_chain();
  void unchain();
  void end_chain();
  void start_flush();
  // Marks a round of `syncs` fdatasyncs, vouching for the log up to `target`, in flight.
  // Returns its id.
  uint64_t begin_flush_round(int64_t target, size_t syncs, bool linked, int64_t linked_segment);
  void on_flush_done(uint64_t round, int32_t result);
  // Everything appended is written and has a flush round started after its write (or is
  // durable): a linked flush then makes the log durable up to its end.
  bool all_covered() const;
  // As many rounds in flight as LogConfig::flush_rounds_max allows (0 counts as 1).
  bool flush_rounds_full() const {
    return flush_rounds_.size() >= std::max<uint32_t>(1, config_.flush_rounds_max);
  }
  void complete_durable_waiters();
  void fail(const LogError& error);

  detail::Segment* find_segment(int64_t offset);
  // Cuts `seg`, which must be the last segment, at byte `position`, where `new_end` starts.
  // With `log_cut_done`, the files' ftruncates and the meta's durable write go through the
  // ring (cut_files_through_ring) and the callback is taken from there, to run once they did.
  LogResult<Offset> cut_last_segment(detail::Segment& seg, uint64_t position, int64_t new_end,
                                     DurableCallback* log_cut_done = nullptr);
  // The files of `seg`, the last segment, cut through the ring to `pos` bytes, `kept_index`
  // index and `kept_time` time entries, and partition.meta written and synced: cutting_ until
  // all completed, then `done` runs with `new_end`. The log's state is cut already; needs the
  // meta handle open (meta_fd()).
  void cut_files_through_ring(detail::Segment& seg, uint64_t pos, uint64_t kept_index,
                              uint64_t kept_time, int64_t new_end, DurableCallback done);
  // truncate_suffix; `log_cut_done` as cut_last_segment's (left as it is when nothing is cut).
  LogResult<Offset> truncate_suffix_at(Offset offset, DurableCallback* log_cut_done);
  LogResult<std::shared_ptr<FileHandle>> log_file(const detail::Segment& seg);
  LogResult<std::shared_ptr<FileHandle>> index_file(const detail::Segment& seg);
  LogResult<std::shared_ptr<FileHandle>> time_file(const detail::Segment& seg);
  LogResult<IndexEntry> index_floor(const detail::Segment& seg, int64_t offset);
  // The header of the batch of `seg` containing `offset`, among its readable bytes.
  LogResult<detail::BatchHeader> find_batch(const detail::Segment& seg, int64_t offset);
  uint64_t readable_bytes(const detail::Segment& seg) const;

  std::filesystem::path dir_;
  LogConfig config_;
  IoRing& ring_;
  FdCache& fds_;
  std::shared_ptr<FileHandle> dir_handle_;
  std::shared_ptr<FileHandle> meta_handle_;
  std::deque<std::unique_ptr<detail::Segment>> segments_;  // by base offset; back() is active

  int64_t log_start_ = 0;
  int64_t end_offset_ = 0;   // next offset to assign
  int64_t written_end_ = 0;  // all offsets below are written (contiguously)
  int64_t durable_end_ = 0;  // all offsets below are fdatasync'd
  int64_t recovery_point_ = 0;
  bool dir_dirty_ = false;
  bool write_failed_ = false;
  bool keep_fds_ = false;
  std::optional<LogError> failure_;

  uint64_t next_seq_ = 0;
  std::deque<PendingWrite> pending_writes_;                  // by sequence
  std::vector<HeldWrite> held_writes_;                       // zero_ahead: in sequence order
  std::deque<AppendWaiter> appends_;                         // callbacks waiting for written_end_
  std::multimap<int64_t, DurableCallback> durable_waiters_;  // by offset awaited
  std::vector<std::function<void()>> appendable_waiters_;    // when_appendable()
  std::vector<std::function<void()>> idle_waiters_;          // when_idle()
  // A ring operation of this log completed (every completion calls it): wakes when_idle().
  void op_done();
  // Appends in flight at most for the last append that answered kBusy for their number.
  size_t appendable_writes_ = SIZE_MAX;
  // Whether what the last kBusy append waited for is still in flight.
  bool busy_for_appends() const;
  // A prepared roll's files are still opening (next_).
  bool rolls_opening() const;
  // Runs appendable_waiters_ unless busy_for_appends().
  void wake_appenders();
  std::deque<FlushRound> flush_rounds_;  // in flight, oldest first
  uint64_t next_round_ = 0;
  bool flush_again_ = false;  // writes completed while no round could start
  // No member initializers: clang 14 cannot default-construct (optional::emplace) a nested
  // class that has them while the enclosing class is incomplete.
  struct Chain {
    int64_t segment_base;
    std::shared_ptr<FileHandle> file;
    std::vector<IoRing::ChainedWrite> writes;
    std::vector<uint64_t> seqs;  // their PendingWrite entries
  };
  // The next segment's files, opened through the ring ahead of a roll (AppendOptions::
  // roll_async). `opening`: opens in flight; ready once 0 and none failed.
  // `discarded` while opening: the opens' completions close and remove what they opened.
  struct NextSegment {
    int64_t base;
    std::shared_ptr<FileHandle> files[3];  // .log, .index, .timeindex
    std::string paths[3];
    int opening;
    bool failed;
    bool discarded;
  };
  // In roll order: an append that rolls more than once (segments smaller than one Raft append)
  // has each roll's files opened ahead, up to kPreparedRollsMax (past that, at once).
  std::vector<std::shared_ptr<NextSegment>> next_;
  static constexpr size_t kPreparedRollsMax = 16;
  int side_handles_opening_ = 0;  // partition.meta's and the directory's, for a roll
  bool meta_writing_ = false;  // write_meta_async() in flight
  bool meta_again_ = false;    // and another asked for meanwhile
  std::optional<Chain> chain_;    // an append's writes being gathered for a linked flush
  int64_t last_flush_ms_ = 0;
  size_t ops_in_flight_ = 0;
  bool cutting_ = false;  // truncate_suffix_async's ring operations in flight
  uint64_t flush_count_ = 0;  // ring operations of this log not yet completed
  // LogConfig::zero_ahead: bytes submitted for writing since the last flush round started, and
  // a moving average of the bytes each round syncs (zeros ahead pay only for small ones).
  uint64_t bytes_since_round_ = 0;
  uint64_t round_bytes_avg_ = 0;

  // The last kRecentBatchesMax batches appended, in log order (contiguous offsets up to the log
  // end): where each one is, so that tailing reads and Raft's term lookups need no header
  // preads. Empty after open; trimmed by truncation, retention, log start moves, compaction.
  struct RecentBatch {
    int64_t base_offset;
    int64_t last_offset;
    int64_t segment_base;
    uint64_t position;
    uint64_t size;
    int64_t max_timestamp;
    int64_t segment_max_before;  // its segment's max_timestamp before it was appended
    int32_t leader_epoch;
    uint32_t index_before;  // its segment's index_entries before it was appended
  };
  static constexpr size_t kRecentBatchesMax = 1024;
  // The active segment's index entries waiting (pump_index) go to disk at this many bytes.
  static constexpr size_t kLateIndexBytesMax = 4096;
  std::deque<RecentBatch> recent_;

  RecoveryReport report_;
  int64_t first_dirty_ = 0;  // compaction: offsets below were mapped by a completed pass
  uint64_t history_ = 0;     // history()
  int64_t scrub_segment_ = -1;  // scrub(): the segment (base offset) and byte it resumes at
  uint64_t scrub_position_ = 0;
  int64_t scrub_last_end_ = 0;  // one past the last batch the scrubber found good
  // scrub(): the read in flight or done (checked at the next call), a segment being opened,
  // and the size of the batch at the cursor when a read brought its header (0: not known).
  struct ScrubRead {
    int64_t segment_base = 0;
    uint64_t position = 0;
    std::vector<std::byte> bytes;
    int32_t result = 0;
    bool done = false;
  };
  std::shared_ptr<ScrubRead> scrub_read_;
  bool scrub_opening_ = false;
  // A read handle the scrubber opened through the ring (its own: one opened while the file was
  // being replaced must never reach the FdCache, where Fetches would read the old file).
  std::shared_ptr<FileHandle> scrub_file_;
  int64_t scrub_file_base_ = -1;
  uint64_t files_epoch_ = 0;  // counts files_changed()
  // A segment file was cut, replaced or removed: the scrubber forgets its read and handle,
  // read_async() its cache; opens and reads in flight are not kept when they complete.
  void files_changed() {
    ++files_epoch_;
    scrub_read_.reset();
    scrub_file_.reset();
    scrub_file_base_ = -1;
    drop_cold_cache();
  }
  uint64_t scrub_need_ = 0;
  // Checks `read` (scrub()); an I/O error is returned, damage goes in `out`.
  LogResult<void> scrub_check(const ScrubRead& read, ScrubResult& out);
};

}  // namespace sluice::log

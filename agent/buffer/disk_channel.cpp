// The disk buffer's loop side. Writes go to the thread pool in groups: every batch pushed
// while one write job runs waits for the next, which writes them all with one fdatasync
// (group commit), so the cost of a sync is shared by however many batches came meanwhile.
// Only after the job returns are those batches' acknowledgements released.
//
// Records made from batches of a stateful transform carry the transform's batch numbers
// (RecordMarks) and reach the sink only once that transform's saved state covers them: so
// at any crash, a record the sink may have delivered is in the state, and one that is not in
// the state was never delivered and is set aside at the next start (its sources were not
// acknowledged either, and send it again). docs/adr/009-state-commit.md.
#include <sys/stat.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>

#include "buffer/batch_record.hpp"
#include "buffer/channel.hpp"
#include "buffer/disk_log.hpp"
#include "weir/log.hpp"
#include "weir/uv.hpp"

namespace weir::buffer {

namespace {

constexpr std::uint64_t kRetryMs = 1000;

std::uint64_t segment_size_for(std::uint64_t max_size) {
  return std::clamp<std::uint64_t>(max_size / 8, 1ull << 20, 128ull << 20);
}

class DiskChannel final : public Channel, public std::enable_shared_from_this<DiskChannel> {
 public:
  DiskChannel(uv_loop_t* loop, DiskChannelOptions options, ComponentMetrics& metrics)
      : loop_(loop),
        options_(std::move(options)),
        metrics_(metrics),
        writer_(std::make_shared<SegmentWriter>(options_.directory, segment_size_for(options_.max_size))),
        reader_(options_.directory),
        ledger_(std::make_shared<Ledger>(options_.directory)) {}

  // The runtime let go of the buffer (shutdown): jobs still in flight finish their file
  // work, and their results are ignored.
  void close() {
    closed_ = true;
    if (options_.coverage && coverage_listener_) options_.coverage->unlisten(coverage_listener_);
    retry_.close();
    redeliver_timer_.close();
  }

  Status open() {
    std::error_code ec;
    std::filesystem::create_directories(options_.directory, ec);
    if (ec) return Error(fmt::format("cannot create {}: {}", options_.directory, ec.message()));
    auto scanned = scan_log(options_.directory);
    if (!scanned.ok()) return scanned.error();
    LogScan& scan = scanned.value();
    if (Status opened = ledger_->open(); !opened.ok()) return opened;
    for (const std::string& problem : scan.problems) log::warn(options_.component, "disk buffer: {}", problem);
    metrics_.buffer_corrupted_records.add(scan.corrupted_records);
    metrics_.events_dropped.add(scan.events_lost);
    for (auto [id, size] : scan.segment_bytes) {
      segments_[id] = {size, id};
      disk_bytes_ += size;
    }
    for (const RecordLocation& record : scan.unacknowledged) {
      Segment& segment = segments_[record.segment];
      segment.end_id = std::max(segment.end_id, record.end_id());
      unread_.push_back({record, nullptr, 0});
      unread_events_ += record.events;
    }
    next_id_ = written_ = scan.next_id;
    acknowledged_ = scan.acknowledged;
    set_aside_uncovered();
    if (options_.coverage) {
      coverage_listener_ = options_.coverage->listen([this] {
        if (on_change && readable()) on_change();
      });
    }
    if (!unread_.empty() || scan.records || scan.corrupted_records) {
      log::info(options_.component, "disk buffer {}: {} events in {} records to deliver, {} segment(s), {}",
                options_.directory, unread_events_, unread_.size(), segments_.size(),
                scan.problems.empty() ? "intact" : fmt::format("{} problem(s) logged above", scan.problems.size()));
    }
    advance_acknowledged();
    remove_delivered_segments();
    return {};
  }

  void push(BatchPtr batch) override {
    Pending pending;
    pending.first_id = next_id_;
    for (const AckRef& ack : batch->acks()) {
      const auto& mark = ack->state_mark();
      if (!mark) continue;
      auto same = std::find_if(pending.marks.begin(), pending.marks.end(),
                               [&](const RecordMark& m) { return m.owner == mark->owner; });
      if (same == pending.marks.end()) pending.marks.push_back(*mark);
      else same->batch = std::max(same->batch, mark->batch);
    }
    pending.acks = batch->take_acks();
    next_id_ += batch->size();
    pending_events_ += batch->size();
    pending_bytes_ += batch->byte_size();
    pending.memory = batch->memory_bytes();
    pending_memory_ += pending.memory;
    pending.batch = std::move(batch);
    queue_.push_back(std::move(pending));
    start_write();
  }

  bool full() const override {
    return failing_ || pending_events_ >= options_.memory.max_events || pending_memory_ >= options_.memory.max_bytes ||
           disk_bytes_ + pending_bytes_ >= options_.max_size;
  }
  bool readable() const override { return !stopped_reading_ && !unread_.empty() && committed(unread_.front().where); }
  bool idle() const override {
    return queue_.empty() && !writing_ && (stopped_reading_ || (unread_.empty() && redeliver_.empty()));
  }
  std::uint64_t events() const override { return unread_events_ + pending_events_; }
  std::uint64_t bytes() const override { return disk_bytes_; }
  void stop_reading() override { stopped_reading_ = true; }
  bool durable() const override { return true; }
  bool busy() const override { return writing_ || removing_; }

  BatchPtr pop() override {
    while (!unread_.empty() && committed(unread_.front().where)) {
      Unread next = std::move(unread_.front());
      unread_.pop_front();
      unread_events_ -= next.where.events;
      BatchPtr batch = std::move(next.batch);
      if (batch) {
        memory_events_ -= batch->size();
        memory_bytes_ -= next.memory;
      } else {
        batch = read(next.where);
      }
      // In id order, which a record handed out again (after a failure) breaks at the back:
      // the ledger may only pass ids whose records are all done.
      auto at = std::lower_bound(outstanding_.begin(), outstanding_.end(), next.where.first_id,
                                 [](const Outstanding& o, std::uint64_t id) { return o.where.first_id < id; });
      outstanding_.insert(at, {next.where, false});
      if (!batch) {  // unreadable: counted, and let go so the ledger can move past it
        delivered(next.where.first_id, DeliveryStatus::Delivered, "");
        continue;
      }
      batch->set_first_event_id(next.where.first_id);
      std::weak_ptr<DiskChannel> weak = weak_from_this();
      std::uint64_t id = next.where.first_id;
      batch->add_ack(Acknowledgement::make([weak, id](DeliveryStatus status, const std::string& reason) {
        if (auto self = weak.lock()) self->delivered(id, status, reason);
      }));
      return batch;
    }
    return nullptr;
  }

 private:
  struct Pending {
    std::uint64_t first_id = 0;
    BatchPtr batch;
    std::uint64_t memory = 0;  // what it takes in memory (EventBatch::memory_bytes)
    std::vector<AckRef> acks;  // of the batch's sources: released once its record is durable
    std::vector<RecordMark> marks;
  };
  struct Unread {
    RecordLocation where;
    BatchPtr batch;  // kept in memory when the memory window allowed, else read back
    std::uint64_t memory = 0;
  };
  struct Outstanding {
    RecordLocation where;
    bool done = false;
  };
  struct Segment {
    std::uint64_t bytes = 0;
    std::uint64_t end_id = 0;  // one past its last record's events (its own id when empty)
  };
  // One group on the thread pool: encoded, written, synced there; results read on the loop.
  struct WriteJob {
    uv_work_t work{};
    std::shared_ptr<SegmentWriter> writer;
    std::deque<Pending> group;
    bool sync = true;
    std::vector<RecordLocation> records;
    Result<SegmentWriter::Appended> result = Error("not run");
    std::shared_ptr<DiskChannel> channel;  // held while in flight
  };
  struct RemoveJob {
    uv_work_t work{};
    std::shared_ptr<Ledger> ledger;
    std::string directory;
    std::vector<std::uint64_t> segments;
    std::vector<std::uint64_t> removed;
    std::string error;
    std::shared_ptr<DiskChannel> channel;
  };

  void start_write() {
    if (writing_ || queue_.empty() || failing_) return;
    auto* job = new WriteJob();
    job->writer = writer_;
    job->group = std::move(queue_);
    queue_.clear();
    job->sync = options_.sync;
    job->channel = shared_from_this();
    job->work.data = job;
    writing_ = true;
    int rc = uv_queue_work(
        loop_, &job->work,
        [](uv_work_t* w) {
          auto* job = static_cast<WriteJob*>(w->data);
          ByteBuffer records, payload;
          for (const Pending& p : job->group) {
            payload.clear();
            encode_batch(*p.batch, p.marks, payload);
            RecordLocation where;
            where.offset = records.size();
            where.payload_bytes = static_cast<std::uint32_t>(payload.size());
            where.first_id = p.first_id;
            where.events = static_cast<std::uint32_t>(p.batch->size());
            where.marks = p.marks;
            append_record(records, p.first_id, where.events, payload.view());
            job->records.push_back(where);
          }
          job->result = job->writer->append(records.view(), job->group.front().first_id, job->sync);
        },
        [](uv_work_t* w, int) {
          std::unique_ptr<WriteJob> job(static_cast<WriteJob*>(w->data));
          if (!job->channel->closed_) job->channel->written(*job);
        });
    if (rc != 0) {
      std::unique_ptr<WriteJob> job_owner(job);
      queue_ = std::move(job->group);
      writing_ = false;
      write_failed(uv_error_text(rc));
    }
  }

  void written(WriteJob& job) {
    writing_ = false;
    if (!job.result.ok()) {
      // Back to the front of the queue, same ids: nothing of them was acknowledged.
      for (auto it = job.group.rbegin(); it != job.group.rend(); ++it) queue_.push_front(std::move(*it));
      write_failed(job.result.error().message());
      return;
    }
    if (failing_since_) {
      log::info(options_.component, "disk buffer: writing again");
      failing_since_ = 0;
      metrics_.recovered();
    }
    const SegmentWriter::Appended& appended = job.result.value();
    Segment& segment = segments_[appended.segment];
    disk_bytes_ += appended.segment_bytes - segment.bytes;
    segment.bytes = appended.segment_bytes;
    writer_segment_ = appended.segment;
    for (std::size_t i = 0; i < job.group.size(); ++i) {
      Pending& p = job.group[i];
      RecordLocation where = job.records[i];
      where.segment = appended.segment;
      where.offset += appended.offset;
      segment.end_id = std::max(segment.end_id, where.end_id());
      pending_events_ -= where.events;
      pending_bytes_ -= p.batch->byte_size();
      pending_memory_ -= p.memory;
      written_ = where.end_id();
      // Keep the batch for the sink while the memory window has room: no read, no decode.
      if (memory_events_ + where.events <= options_.memory.max_events &&
          memory_bytes_ + p.memory <= options_.memory.max_bytes) {
        memory_events_ += where.events;
        memory_bytes_ += p.memory;
      } else {
        p.batch.reset();
        p.memory = 0;
      }
      unread_.push_back({where, std::move(p.batch), p.memory});
      unread_events_ += where.events;
    }
    save_ledger();
    job.group.clear();  // the sources' acknowledgements go here: their events are durable
    start_write();
    if (on_change) on_change();
  }

  void write_failed(const std::string& reason) {
    failing_ = true;
    // The writer closed its segment: once delivered, that one can go too. On a full disk
    // the space it gives back may be what the next write needs.
    writer_segment_ = UINT64_MAX;
    remove_delivered_segments();
    metrics_.errors.add();
    if (!failing_since_) failing_since_ = uv_now(loop_);
    metrics_.retrying(uv_now(loop_), "disk buffer: " + reason);
    // Logged once a spell and then every minute, not every retry.
    if (uv_now(loop_) - last_failure_log_ >= 60000 || last_failure_log_ == 0) {
      last_failure_log_ = uv_now(loop_);
      log::error(options_.component, "disk buffer: {}; {} events wait (not acknowledged), retrying every {} ms",
                 reason, pending_events_, kRetryMs);
    }
    start_timer(retry_, loop_, this, [](uv_timer_t* t) {
      auto* self = static_cast<DiskChannel*>(t->data);
      self->failing_ = false;
      self->start_write();
      if (self->on_change) self->on_change();
    }, kRetryMs);
  }

  // Whether every stateful transform the record came through has saved a state that covers it.
  bool committed(const RecordLocation& where) const {
    if (!options_.coverage) return true;
    for (const RecordMark& mark : where.marks) {
      if (!options_.coverage->covered(mark.owner, mark.batch)) return false;
    }
    return true;
  }

  // At start: records from batches that the saved state of their transform does not cover
  // were made after the last snapshot on disk. Their sources were not acknowledged (that
  // waits for the snapshot) and send them again, and the restored state lacks them, so the
  // transform makes them again: delivered as well, they would count twice. They are set
  // aside for good (durably, before anything new is written: batch numbers after the
  // snapshot are used again) and never handed out.
  void set_aside_uncovered() {
    std::vector<RecordLocation> aside;
    std::uint64_t events = 0;
    std::set<std::string> owners;
    for (auto it = unread_.begin(); it != unread_.end();) {
      bool uncovered = false;
      for (const RecordMark& mark : it->where.marks) {
        std::optional<std::uint64_t> covers = options_.coverage ? options_.coverage->loaded(mark.owner) : std::nullopt;
        if (covers && mark.batch >= *covers) {
          uncovered = true;
          owners.insert(mark.owner);
        }
      }
      it->where.marks.clear();  // judged now: what stays is covered, or has no state to wait for
      if (!uncovered) {
        ++it;
        continue;
      }
      aside.push_back(it->where);
      events += it->where.events;
      unread_events_ -= it->where.events;
      it = unread_.erase(it);
    }
    if (aside.empty()) return;
    std::string names;
    for (const auto& owner : owners) names += (names.empty() ? "" : ", ") + owner;
    if (Status done = set_aside_records(options_.directory, aside); !done.ok()) {
      // Kept, then: delivered again rather than lost (the totals may count them twice).
      metrics_.errors.add();
      log::error(options_.component, "disk buffer: cannot set aside {} records made after the last saved state of {}: {}; "
                 "delivering them", aside.size(), names, done.error().message());
      for (auto& where : aside) {
        unread_events_ += where.events;
        auto at = std::lower_bound(unread_.begin(), unread_.end(), where.first_id,
                                   [](const Unread& u, std::uint64_t id) { return u.where.first_id < id; });
        unread_.insert(at, {where, nullptr, 0});
      }
      return;
    }
    metrics_.buffer_set_aside_events.add(events);
    log::info(options_.component, "disk buffer: set aside {} events in {} records made after the last saved state of {} "
              "(their sources were not acknowledged and send them again)", events, aside.size(), names);
  }

  BatchPtr read(const RecordLocation& where) {
    std::string payload;
    Status status = reader_.read(where, payload);
    BatchPtr batch;
    if (status.ok()) {
      batch = EventBatch::create();
      payload.reserve(payload.size() + 64);
      status = decode_batch(payload, payload.capacity(), parser_, *batch);
    }
    if (!status.ok()) {
      metrics_.buffer_corrupted_records.add();
      metrics_.events_dropped.add(where.events);
      log::error(options_.component, "disk buffer: {}; {} events lost", status.error().message(), where.events);
      return nullptr;
    }
    return batch;
  }

  void delivered(std::uint64_t id, DeliveryStatus status, const std::string& reason) {
    auto it = std::find_if(outstanding_.begin(), outstanding_.end(),
                           [id](const Outstanding& o) { return o.where.first_id == id; });
    if (it == outstanding_.end()) return;
    if (status != DeliveryStatus::Delivered) {
      // The sink gave up on it; the buffer does not: it is handed out again after a pause.
      metrics_.errors.add();
      log::error(options_.component, "disk buffer: delivery of events {}..{} failed ({}); handing them out again in {} ms",
                 id, it->where.end_id() - 1, reason, kRetryMs);
      redeliver_.push_back(it->where);
      outstanding_.erase(it);
      start_timer(redeliver_timer_, loop_, this, [](uv_timer_t* t) {
        auto* self = static_cast<DiskChannel*>(t->data);
        std::sort(self->redeliver_.begin(), self->redeliver_.end(),
                  [](const RecordLocation& a, const RecordLocation& b) { return a.first_id > b.first_id; });
        for (const RecordLocation& where : self->redeliver_) {
          self->unread_.push_front({where, nullptr, 0});
          self->unread_events_ += where.events;
        }
        self->redeliver_.clear();
        if (self->on_change) self->on_change();
      }, kRetryMs);
      return;
    }
    it->done = true;
    advance_acknowledged();
  }

  // The ledger moves to the first id not yet delivered.
  void advance_acknowledged() {
    while (!outstanding_.empty() && outstanding_.front().done) outstanding_.pop_front();
    std::uint64_t first_open = written_;
    if (!outstanding_.empty()) first_open = std::min(first_open, outstanding_.front().where.first_id);
    if (!unread_.empty()) first_open = std::min(first_open, unread_.front().where.first_id);
    for (const RecordLocation& where : redeliver_) first_open = std::min(first_open, where.first_id);
    if (first_open <= acknowledged_ && ledger_->acknowledged() == acknowledged_) return;
    acknowledged_ = std::max(acknowledged_, first_open);
    save_ledger();
    remove_delivered_segments();
  }

  void save_ledger() {
    if (Status saved = ledger_->save(acknowledged_, written_); !saved.ok()) {
      metrics_.errors.add();
      log::error(options_.component, "disk buffer: {} (the segments are kept; a restart may deliver again)",
                 saved.error().message());
    }
  }

  // Whole segments go once every event in them is delivered, after the ledger that says so
  // is on disk: a crash between the two re-delivers nothing and loses nothing.
  void remove_delivered_segments() {
    if (removing_) return;
    std::vector<std::uint64_t> done;
    for (auto& [id, segment] : segments_) {
      if (segment.end_id > acknowledged_) break;
      if (id == writer_segment_) continue;  // the writer's open file: it goes when the writer moves on
      done.push_back(id);
    }
    if (done.empty()) return;
    auto* job = new RemoveJob();
    job->ledger = ledger_;
    job->directory = options_.directory;
    job->segments = std::move(done);
    job->channel = shared_from_this();
    job->work.data = job;
    removing_ = true;
    int rc = uv_queue_work(
        loop_, &job->work,
        [](uv_work_t* w) {
          auto* job = static_cast<RemoveJob*>(w->data);
          if (Status synced = job->ledger->sync(); !synced.ok()) {
            job->error = synced.error().message();
            return;
          }
          for (std::uint64_t id : job->segments) {
            std::string path = job->directory + "/" + segment_file_name(id);
            if (::unlink(path.c_str()) == 0 || errno == ENOENT) job->removed.push_back(id);
          }
        },
        [](uv_work_t* w, int) {
          std::unique_ptr<RemoveJob> job(static_cast<RemoveJob*>(w->data));
          if (!job->channel->closed_) job->channel->removed(*job);
        });
    if (rc != 0) {
      delete job;
      removing_ = false;
    }
  }

  void removed(RemoveJob& job) {
    removing_ = false;
    if (!job.error.empty()) {
      metrics_.errors.add();
      log::error(options_.component, "disk buffer: {}; delivered segments kept for now", job.error);
    }
    for (std::uint64_t id : job.removed) {
      auto it = segments_.find(id);
      if (it == segments_.end()) continue;
      disk_bytes_ -= it->second.bytes;
      segments_.erase(it);
      reader_.close_segment(id);
    }
    if (on_change) on_change();
  }

  uv_loop_t* loop_;
  DiskChannelOptions options_;
  ComponentMetrics& metrics_;
  std::shared_ptr<SegmentWriter> writer_;  // used by the write job only
  SegmentReader reader_;
  std::shared_ptr<Ledger> ledger_;
  JsonParser parser_;
  bool closed_ = false;

  std::deque<Pending> queue_;       // not yet handed to a write job
  bool writing_ = false;
  bool removing_ = false;
  bool failing_ = false;            // the last write failed: wait for the retry
  std::uint64_t failing_since_ = 0, last_failure_log_ = 0;
  std::uint64_t pending_events_ = 0, pending_bytes_ = 0;  // pushed, not yet durable (input size)
  std::uint64_t pending_memory_ = 0;                      // ... and what they take in memory
  std::deque<Unread> unread_;       // durable, not yet handed to the sink
  std::uint64_t unread_events_ = 0;
  std::uint64_t memory_events_ = 0, memory_bytes_ = 0;    // unread batches kept in memory
  std::deque<Outstanding> outstanding_;  // handed to the sink, in id order
  std::vector<RecordLocation> redeliver_;
  std::map<std::uint64_t, Segment> segments_;
  std::uint64_t writer_segment_ = UINT64_MAX;
  std::uint64_t disk_bytes_ = 0;
  std::uint64_t next_id_ = 0;       // the id the next pushed event gets
  std::uint64_t written_ = 0;       // every id below it is durable
  std::uint64_t acknowledged_ = 0;  // every id below it is delivered
  bool stopped_reading_ = false;
  std::uint64_t coverage_listener_ = 0;
  UvTimer retry_;
  UvTimer redeliver_timer_;
};

}  // namespace

Result<std::unique_ptr<Channel>> open_disk_channel(uv_loop_t* loop, DiskChannelOptions options,
                                                   ComponentMetrics& metrics) {
  auto channel = std::make_shared<DiskChannel>(loop, std::move(options), metrics);
  if (Status opened = channel->open(); !opened.ok()) return opened.error();
  // The runtime owns the channel through a unique_ptr; jobs in flight keep it alive through
  // shared_ptr copies, so the shared owner is handed over with an aliasing deleter.
  struct Holder final : Channel {
    explicit Holder(std::shared_ptr<DiskChannel> c) : inner(std::move(c)) {
      inner->on_change = [this] { if (on_change) on_change(); };
    }
    ~Holder() override {
      inner->on_change = nullptr;
      inner->close();
    }
    void push(BatchPtr batch) override { inner->push(std::move(batch)); }
    bool full() const override { return inner->full(); }
    bool readable() const override { return inner->readable(); }
    BatchPtr pop() override { return inner->pop(); }
    bool idle() const override { return inner->idle(); }
    std::uint64_t events() const override { return inner->events(); }
    std::uint64_t bytes() const override { return inner->bytes(); }
    void stop_reading() override { inner->stop_reading(); }
    bool durable() const override { return true; }
    bool busy() const override { return inner->busy(); }
    std::shared_ptr<DiskChannel> inner;
  };
  return std::unique_ptr<Channel>(std::make_unique<Holder>(std::move(channel)));
}

}  // namespace weir::buffer

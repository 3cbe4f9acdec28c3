// The process's allocator policy, in one place: set when a pipeline starts running.
#include <malloc.h>

#include "runtime/runtime_impl.hpp"

namespace weir::runtime {

// glibc's defaults give large blocks straight back to the kernel: allocations over 128 KiB
// are mmap'ed (the threshold adapts to the last block freed), and heap tops over 128 KiB are
// trimmed. A pipeline frees and allocates blocks of a few MiB (request bodies, curl's upload
// buffer, read chunks) hundreds of times a second, and every page of a block given back
// faults again when it is next used. In the ClickHouse benchmark with batch.max_events 5000
// that was 560-615k events/s against 800-830k with the thresholds below. Memory is given back
// when the pipeline idles instead (trim_if_idle).
//
// One malloc arena for every thread: bodies and blocks are made on the thread pool and freed
// on the loop, and with an arena per thread each kept its own high-water mark of free
// memory. The CVAT pipeline into ClickHouse peaked at 85-91 MiB with glibc's arenas and at
// 62-68 MiB with one, at the same rate and CPU (small allocations stay in each thread's
// tcache; the large ones are few).
void Runtime::Impl::tune_memory() {
  mallopt(M_ARENA_MAX, 1);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 128 << 20);
  if (start_timer(trim_timer_, &loop_, this, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->trim_if_idle(); },
                  5000, 5000) == 0) {
    uv_unref(trim_timer_.base());  // never what keeps the loop running
  }
}

// Every 5 s: when no event moved since the last check, what the allocator holds free goes
// back to the kernel, once per idle spell.
void Runtime::Impl::trim_if_idle() {
  std::uint64_t events = 0;
  for (auto& node : nodes_) events += node->metrics.events_received.get();
  if (events != events_at_last_trim_check_) {
    events_at_last_trim_check_ = events;
    trimmed_ = false;
    return;
  }
  if (trimmed_) return;
  malloc_trim(0);
  trimmed_ = true;
}

}  // namespace weir::runtime

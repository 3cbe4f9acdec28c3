#include "weir/request_watch.hpp"

#include <utility>
#include <vector>

namespace weir {
namespace {

struct Watchers {
  std::vector<std::pair<std::uint64_t, RequestWatch::Watcher>> list;
  std::uint64_t next = 1;
};

// Loop thread only (components run there), so no lock.
Watchers& watchers() {
  static Watchers instance;
  return instance;
}

}  // namespace

std::uint64_t RequestWatch::watch(Watcher watcher) {
  Watchers& w = watchers();
  std::uint64_t handle = w.next++;
  w.list.emplace_back(handle, std::move(watcher));
  return handle;
}

void RequestWatch::unwatch(std::uint64_t handle) {
  auto& list = watchers().list;
  std::erase_if(list, [handle](const auto& entry) { return entry.first == handle; });
}

bool RequestWatch::watched() { return !watchers().list.empty(); }

void RequestWatch::report(const ServedRequest& request) {
  // A copy: a watcher may unwatch (its component stopping) while being called.
  auto list = watchers().list;
  for (auto& [handle, watcher] : list) watcher(request);
}

}  // namespace weir

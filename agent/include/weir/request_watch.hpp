// Requests that weir's own HTTP sources answered, for components that watch them (the
// internal_monitoring source turns them into `requests` and `errors` points). A source
// reports each answer; watchers are called at once, on the loop thread. Without watchers a
// report costs one check.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

#include "weir/time.hpp"

namespace weir {

struct ServedRequest {
  std::string_view component;   // the source that answered
  std::string_view method;
  std::string_view path;
  int status = 0;
  std::string_view request_id;
  std::string_view error;       // why it failed, if it did
  double seconds = 0;           // execution time
  EpochNanos time = 0;          // when it was answered (wall clock)
};

class RequestWatch {
 public:
  using Watcher = std::function<void(const ServedRequest&)>;
  // Returns a handle for unwatch().
  static std::uint64_t watch(Watcher watcher);
  static void unwatch(std::uint64_t handle);
  static bool watched();
  static void report(const ServedRequest& request);
};

}  // namespace weir

// How far each stateful transform's saved state reaches, shared by the transforms' state
// keepers (which advance it) and the disk buffers downstream of them (which read it).
// Batch numbers below covers(owner) are in the state on disk. See
// docs/adr/009-state-commit.md for why a disk buffer waits for it.
//
// Loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace weir::buffer {

class StateCoverage {
 public:
  // What the state loaded at start covers: nullopt when the owner had no readable state
  // (its records from before cannot be judged, so they are kept).
  void set_loaded(const std::string& owner, std::optional<std::uint64_t> covers) {
    loaded_[owner] = covers;
    live_[owner] = covers.value_or(0);
  }
  std::optional<std::uint64_t> loaded(std::string_view owner) const {
    auto it = loaded_.find(owner);
    return it == loaded_.end() ? std::nullopt : it->second;
  }
  // Batches below `covers` are in a snapshot now on disk.
  void advance(const std::string& owner, std::uint64_t covers) {
    std::uint64_t& now = live_[owner];
    if (covers <= now) return;
    now = covers;
    auto listeners = listeners_;  // a listener may unlisten while called
    for (auto& [id, listener] : listeners) listener();
  }
  // False for an owner that keeps no state here: nothing to wait for.
  bool covered(std::string_view owner, std::uint64_t batch) const {
    auto it = live_.find(owner);
    return it == live_.end() || batch < it->second;
  }

  std::uint64_t listen(std::function<void()> listener) {
    listeners_[++next_listener_] = std::move(listener);
    return next_listener_;
  }
  void unlisten(std::uint64_t id) { listeners_.erase(id); }

 private:
  std::map<std::string, std::optional<std::uint64_t>, std::less<>> loaded_;
  std::map<std::string, std::uint64_t, std::less<>> live_;
  std::map<std::uint64_t, std::function<void()>> listeners_;
  std::uint64_t next_listener_ = 0;
};

}  // namespace weir::buffer

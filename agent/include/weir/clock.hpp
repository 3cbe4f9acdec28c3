// The pipeline's time and randomness. Every component gets both from its context, never
// from the system clock or std::random_device, so a replay is a function of its input:
// `weir run` reads the system clock and seeds from the operating system; `weir replay` and
// `weir test` use a clock that follows the event time of their input (or stands still at
// --now) and seeds from --seed.
#pragma once

#include <cstdint>
#include <string_view>

#include "weir/time.hpp"

namespace weir {

class Clock {
 public:
  virtual ~Clock() = default;
  // Nanoseconds since the Unix epoch, UTC. Never goes back.
  virtual EpochNanos now() const = 0;
  // True when time moves only with the input (replay, tests). A component must then act on
  // what its batches hold alone and emit nothing from timers, which would fire at points
  // of the stream the input does not fix.
  virtual bool follows_input() const { return false; }
};

// The system clock, for `weir run`.
class SystemClock final : public Clock {
 public:
  EpochNanos now() const override { return wall_clock_now(); }
};

// A clock set by its owner: the latest event time a replay has fed in, or a fixed --now.
class InputClock final : public Clock {
 public:
  explicit InputClock(EpochNanos start = 0) : now_(start) {}
  EpochNanos now() const override { return now_; }
  bool follows_input() const override { return true; }
  void advance_to(EpochNanos time) {
    if (!fixed_ && time > now_) now_ = time;
  }
  // --now: the clock stands at `time` whatever the input holds.
  void fix_at(EpochNanos time) {
    now_ = time;
    fixed_ = true;
  }

 private:
  EpochNanos now_;
  bool fixed_ = false;
};

// A component's random numbers: xoshiro256** (fast; weir needs unique ids, not secrets),
// its state spread from one 64-bit seed by SplitMix64.
class Random {
 public:
  explicit Random(std::uint64_t seed = 0) { reseed(seed); }
  void reseed(std::uint64_t seed) {
    for (auto& word : state_) word = splitmix(seed);
  }
  std::uint64_t next() {
    auto rotl = [](std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
    std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }
  // A number in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  // The seed of one component: the pipeline's seed mixed with the component's name, so
  // adding a component changes no other component's numbers.
  static std::uint64_t seed_for(std::uint64_t pipeline_seed, std::string_view component) {
    std::uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a over the name
    for (char c : component) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
    std::uint64_t mixed = pipeline_seed ^ h;
    return splitmix(mixed);
  }

 private:
  static std::uint64_t splitmix(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  std::uint64_t state_[4];
};

}  // namespace weir

#include "cli/top.hpp"

#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

#include "weir/http_client.hpp"

namespace weir::cli {
namespace {

std::string label(std::string_view labels, std::string_view key) {
  std::string needle = std::string(key) + "=\"";
  auto at = labels.find(needle);
  if (at == std::string_view::npos) return {};
  at += needle.size();
  auto end = labels.find('"', at);
  return std::string(labels.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at));
}

std::string human(double value, std::string_view unit = "") {
  const char* suffix[] = {"", "k", "M", "G", "T"};
  int i = 0;
  while (value >= 1000 && i < 4) {
    value /= 1000;
    ++i;
  }
  if (i == 0) return fmt::format("{:.0f}{}", value, unit);
  return fmt::format("{:.1f}{}{}", value, suffix[i], unit);
}

std::string human_bytes(double bytes) {
  const char* suffix[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (bytes >= 1024 && i < 4) {
    bytes /= 1024;
    ++i;
  }
  return i == 0 ? fmt::format("{:.0f}B", bytes) : fmt::format("{:.1f}{}", bytes, suffix[i]);
}

volatile std::sig_atomic_t interrupted = 0;

// Keys without Enter and without echo, restored at exit.
class RawTerminal {
 public:
  RawTerminal() {
    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios raw = saved_;
    raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    active_ = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  ~RawTerminal() {
    if (active_) tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  // Waits up to `ms` for a key; 0 when none, 'q' when the terminal is gone (a dropped ssh
  // session hangs it up: reading it then returns at once, forever).
  char key(int ms) const {
    pollfd p{STDIN_FILENO, POLLIN, 0};
    if (!active_) {
      ::poll(nullptr, 0, ms);
      return 0;
    }
    if (::poll(&p, 1, ms) <= 0) return 0;
    if (p.revents & (POLLHUP | POLLERR | POLLNVAL)) return 'q';
    char c = 0;
    ssize_t n = ::read(STDIN_FILENO, &c, 1);
    if (n <= 0) return 'q';
    return c;
  }

 private:
  termios saved_{};
  bool active_ = false;
};

}  // namespace

double ComponentSample::value(std::string_view name) const {
  auto found = values.find(name);
  return found == values.end() ? 0 : found->second;
}

std::map<std::string, ComponentSample> parse_metrics(std::string_view text) {
  std::map<std::string, ComponentSample> out;
  while (!text.empty()) {
    auto end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    if (line.empty() || line.front() == '#') continue;
    auto brace = line.find('{');
    auto close = line.rfind('}');
    if (brace == std::string_view::npos || close == std::string_view::npos || close < brace) continue;
    std::string_view labels = line.substr(brace + 1, close - brace - 1);
    std::string component = label(labels, "component_id");
    if (component.empty()) continue;
    ComponentSample& sample = out[component];
    sample.kind = label(labels, "component_kind");
    sample.type = label(labels, "component_type");
    std::string value(line.substr(close + 1));
    sample.values[std::string(line.substr(0, brace))] = std::strtod(value.c_str(), nullptr);
  }
  return out;
}

std::string render_top(const std::map<std::string, ComponentSample>& before,
                       const std::map<std::string, ComponentSample>& now, double seconds, std::string_view sort,
                       std::string_view api, std::size_t width) {
  struct Row {
    std::string name, kind, type;
    double in_rate, out_rate, in_total, out_total, bytes_in_rate, bytes_out_rate, errors, dead, buffered, capacity;
  };
  std::vector<Row> rows;
  for (const auto& [name, s] : now) {
    auto old = before.find(name);
    auto rate = [&](std::string_view metric) {
      if (old == before.end() || seconds <= 0) return 0.0;
      return std::max(0.0, (s.value(metric) - old->second.value(metric)) / seconds);
    };
    rows.push_back({name, s.kind, s.type, rate("weir_component_received_events_total"),
                    rate("weir_component_sent_events_total"), s.value("weir_component_received_events_total"),
                    s.value("weir_component_sent_events_total"), rate("weir_component_received_bytes_total"),
                    rate("weir_component_sent_bytes_total"), s.value("weir_component_errors_total"),
                    s.value("weir_component_dead_lettered_events_total") + s.value("weir_component_discarded_events_total"),
                    s.value("weir_buffer_events"), s.value("weir_buffer_max_events")});
  }
  std::stable_sort(rows.begin(), rows.end(), [&](const Row& a, const Row& b) {
    if (sort == "in") return a.in_rate > b.in_rate;
    if (sort == "out") return a.out_rate > b.out_rate;
    if (sort == "errors") return a.errors + a.dead > b.errors + b.dead;
    if (sort == "buffer") return a.buffered / std::max(1.0, a.capacity) > b.buffered / std::max(1.0, b.capacity);
    return a.name < b.name;
  });
  std::string out = fmt::format("weir top  {}  every {:.1f}s  sorted by {}   keys: n name, i in/s, o out/s, e errors, "
                                "b buffer, q quit\n\n",
                                api, seconds, sort);
  out += fmt::format("{:<20} {:<9} {:<14} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10} {:>7} {:>7} {:>14}\n", "COMPONENT",
                     "KIND", "TYPE", "IN/s", "OUT/s", "IN", "OUT", "BYTES IN/s", "BYTES OUT/s", "ERRORS", "DEAD",
                     "BUFFER");
  for (const Row& r : rows) {
    std::string buffer = r.capacity > 0 ? fmt::format("{}/{} {:.0f}%", human(r.buffered), human(r.capacity),
                                                      100.0 * r.buffered / r.capacity)
                                        : "-";
    out += fmt::format("{:<20} {:<9} {:<14} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10} {:>7} {:>7} {:>14}\n",
                       r.name.substr(0, 20), r.kind, r.type.substr(0, 14), human(r.in_rate), human(r.out_rate),
                       human(r.in_total), human(r.out_total), human_bytes(r.bytes_in_rate) + "/s",
                       human_bytes(r.bytes_out_rate) + "/s", human(r.errors), human(r.dead), buffer);
  }
  if (width > 0) {
    std::string cut;
    std::size_t from = 0;
    while (from < out.size()) {
      std::size_t end = out.find('\n', from);
      std::string line = out.substr(from, end - from);
      cut += line.substr(0, width) + "\n";
      from = end + 1;
    }
    out = cut;
  }
  return out;
}

int run_top(const TopOptions& options) {
  // (weir ignores SIGHUP for `run`; here a hung-up terminal ends it, as do SIGINT and SIGTERM)
  for (int signum : {SIGINT, SIGTERM, SIGHUP}) std::signal(signum, [](int) { interrupted = 1; });
  http::ClientRequest request;
  request.method = "GET";
  request.url = "http://" + options.api + "/metrics";
  request.timeout = std::chrono::milliseconds(5000);
  request.max_response_bytes = 16 << 20;
  auto scrape = [&](std::map<std::string, ComponentSample>& into, std::string& error) {
    http::ClientResponse r = http::send_blocking(request);
    if (r.status != 200) {
      error = r.status == 0 ? r.transport_error : fmt::format("HTTP {}", r.status);
      return false;
    }
    into = parse_metrics(r.body);
    return true;
  };
  RawTerminal terminal;
  bool tty = isatty(STDOUT_FILENO);
  std::string sort = options.sort;
  std::map<std::string, ComponentSample> before, now;
  std::string error;
  if (!scrape(before, error)) {
    std::fprintf(stderr, "error: cannot read http://%s/metrics: %s\n", options.api.c_str(), error.c_str());
    return 1;
  }
  auto taken = std::chrono::steady_clock::now();
  int printed = 0;
  while (!interrupted) {
    // Waits out the interval, taking keys meanwhile.
    auto due = taken + options.interval;
    bool quit = false;
    while (!interrupted && std::chrono::steady_clock::now() < due) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(due - std::chrono::steady_clock::now());
      char key = terminal.key(static_cast<int>(std::max<std::int64_t>(1, left.count())));
      if (key == 'q' || key == 'Q') quit = true;
      else if (key == 'n') sort = "name";
      else if (key == 'i') sort = "in";
      else if (key == 'o') sort = "out";
      else if (key == 'e') sort = "errors";
      else if (key == 'b') sort = "buffer";
      if (quit) break;
    }
    if (quit || interrupted) break;
    if (!scrape(now, error)) {
      std::fprintf(stderr, "%sweir top: http://%s/metrics: %s\n", tty ? "\x1b[H\x1b[2J" : "", options.api.c_str(),
                   error.c_str());
      // Rates resume from the next good scrape, not from one before the gap.
      scrape(before, error);
      taken = std::chrono::steady_clock::now();
      continue;
    }
    auto at = std::chrono::steady_clock::now();
    double seconds = std::chrono::duration<double>(at - taken).count();
    std::size_t width = 0;
    winsize size{};
    if (tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) width = size.ws_col;
    std::string table = render_top(before, now, seconds, sort, options.api, width);
    if (tty) {
      // Drawn over the last table in one write (each line's end and the rest of the screen
      // erased), rather than cleared first: no flicker, and never a half-drawn screen.
      std::string frame = "\x1b[H";
      for (std::size_t from = 0; from < table.size();) {
        std::size_t end = table.find('\n', from);
        frame += table.substr(from, end - from) + "\x1b[K\n";
        from = end == std::string::npos ? table.size() : end + 1;
      }
      table = frame + "\x1b[J";
    } else {
      table += "\n";
    }
    // A reader that went (`weir top | head`): SIGPIPE is ignored, so the failed write ends it.
    if (std::fputs(table.c_str(), stdout) == EOF || std::fflush(stdout) != 0) break;
    before = std::move(now);
    taken = at;
    if (options.iterations > 0 && ++printed >= options.iterations) break;
  }
  return 0;
}

}  // namespace weir::cli
